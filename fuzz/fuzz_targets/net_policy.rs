//! Feeds arbitrary bytes to what a box's guest controls in the egress policy: DNS queries
//! and the replies they draw, TLS ClientHellos and HTTP request heads (SNI and Host), and
//! rule text. None may panic; what is written must read back (the functions assert it).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => netstack::fuzz_dns(rest),
        1 => netstack::fuzz_sniff(rest),
        _ => netstack::fuzz_rule(rest),
    }
});
