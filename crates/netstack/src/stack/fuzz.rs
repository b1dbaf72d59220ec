//! The fuzzing entry: arbitrary bytes as the guest's stream.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use mio::Events;

use super::Config;
use super::engine::{Engine, Turn};
use crate::gate::DenyGate;
use crate::stats::Counters;

/// Most turns a fuzz input may take after its bytes are in: quiescence comes far sooner.
const MAX_TURNS: usize = 10_000;

/// Feeds `data` to a stack as the guest's stream and runs it until it has consumed it all.
#[doc(hidden)]
pub fn fuzz_frames(data: &[u8]) {
    let Ok((ours, mut guest)) = UnixStream::pair() else {
        return;
    };
    let Ok(mut engine) = Engine::new(
        ours,
        Config::default(),
        Box::new(DenyGate),
        Vec::new(),
        Arc::new(Counters::default()),
    ) else {
        return;
    };
    if guest.set_nonblocking(true).is_err() {
        return;
    }
    let mut events = Events::with_capacity(64);
    let mut sink = [0u8; 65536];
    let mut rest = data;
    for _ in 0..MAX_TURNS {
        if !rest.is_empty() {
            match guest.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        if rest.is_empty() {
            // All in: the guest hangs up, and the stack ends once it has read everything.
            let _ = guest.shutdown(std::net::Shutdown::Write);
        }
        // Read what the stack answers, so it never blocks on a full socket.
        while matches!(guest.read(&mut sink), Ok(n) if n > 0) {}
        match engine.turn(&mut events, Some(Duration::from_millis(1))) {
            Ok(Turn::Continue) => {}
            _ => return,
        }
    }
}
