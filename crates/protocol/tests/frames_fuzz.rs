//! The body of the `protocol_frames` fuzz target (`fuzz/fuzz_targets/protocol_frames.rs`
//! includes this file), and tests running it over the committed seeds so CI exercises it
//! without a fuzzer.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use protocol::frame::{Frame, FrameDecoder, MAX_FRAME_LEN, encode_to_bytes};
use protocol::{MAX_CONTROL_LEN, decode_guest_message, decode_host_message, encode_message};

/// Decodes `data` fed in `chunk`-sized pieces: the frames, and the error that ended it.
fn decode(data: &[u8], chunk: usize) -> (Vec<Frame>, Option<String>) {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for piece in data.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
        assert!(
            decoder.buffered() <= 4 + MAX_FRAME_LEN + chunk,
            "the decoder holds {} bytes",
            decoder.buffered()
        );
    }
    (frames, None)
}

/// Both message decoders on `bytes`: no panic, and what validates survives a round trip.
fn check_messages(bytes: &[u8]) {
    if let Ok(message) = decode_host_message(bytes) {
        match encode_message(&message) {
            Ok(again) => assert_eq!(
                decode_host_message(&again).expect("a valid host message re-decodes"),
                message
            ),
            // Defaults written out can make a message at the size limit a little longer.
            Err(_) => assert!(bytes.len() > MAX_CONTROL_LEN - 256),
        }
    }
    if let Ok(message) = decode_guest_message(bytes) {
        match encode_message(&message) {
            Ok(again) => assert_eq!(
                decode_guest_message(&again).expect("a valid guest message re-decodes"),
                message
            ),
            Err(_) => assert!(bytes.len() > MAX_CONTROL_LEN - 256),
        }
    }
}

/// Arbitrary bytes as a frame stream and as messages: never a panic, the same frames
/// whatever the chunking, and every decoded frame re-encodes to itself.
pub fn check(data: &[u8]) {
    let whole = decode(data, data.len().max(1));
    let chunk = data.first().map_or(1, |b| usize::from(*b % 13) + 1);
    let chunked = decode(data, chunk);
    assert_eq!(whole, chunked, "chunking changed the result");
    for frame in &whole.0 {
        let bytes = encode_to_bytes(frame).expect("a decoded frame re-encodes");
        let (again, error) = decode(&bytes, bytes.len());
        assert_eq!(error, None);
        assert_eq!(again, std::slice::from_ref(frame));
        if let Frame::Control { bytes, .. } = frame {
            check_messages(bytes);
        }
    }
    check_messages(data);
}

#[cfg(test)]
mod seeds {
    use super::check;

    fn seeds() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds/protocol_frames");
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(out.len() >= 5, "seeds missing in {}", dir.display());
        out.push(Vec::new());
        out
    }

    #[test]
    fn fuzz_body_holds_on_seeds() {
        let seeds = seeds();
        for seed in &seeds {
            check(seed);
        }
        // All seeds together: a long stream with errors in the middle.
        check(&seeds.concat());
    }

    #[test]
    fn fuzz_body_holds_on_mutated_seeds() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for seed in seeds().into_iter().filter(|s| !s.is_empty()) {
            for _ in 0..300 {
                let mut data = seed.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() % data.len() as u64) as usize;
                    data[at] = next() as u8;
                }
                if next() % 3 == 0 {
                    let cut = (next() % data.len() as u64) as usize;
                    data.truncate(cut);
                }
                check(&data);
            }
        }
    }
}
