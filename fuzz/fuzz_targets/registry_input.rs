//! Feeds arbitrary text to what a registry or a user controls before any request is made or
//! after an answer comes: image references, `WWW-Authenticate` challenges and `--platform`.
//! None may panic; a parsed reference must print as a reference that parses back to it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::challenge::{MAX_CHALLENGE_BYTES, parse_challenge};
use registry::{Reference, parse_platform};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(text) {
        let full = r.to_string();
        // The full form may exceed the input's length cap (`alpine` gains a prefix) but must
        // otherwise parse back to a reference that prints the same (`:latest` made explicit).
        if let Ok(again) = Reference::parse(&full) {
            assert_eq!(again.to_string(), full, "{text:?}");
            assert_eq!(again.repository(), r.repository());
            assert_eq!(again.registry(), r.registry());
            assert_eq!(again.digest(), r.digest());
        }
        let _ = r.manifest_reference();
        let _ = r.api_host();
    }
    let challenge = parse_challenge(text);
    if text.len() > MAX_CHALLENGE_BYTES {
        assert!(challenge.is_none());
    }
    if let Ok(p) = parse_platform(text) {
        assert!(!p.os.is_empty() && !p.architecture.is_empty());
    }
});
