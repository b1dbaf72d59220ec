use proptest::prelude::*;

use super::*;

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>> {
    let mut d = FrameDecoder::new();
    d.feed(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame()? {
        out.push(f);
    }
    Ok(out)
}

fn raw(len: u32, kind: u8, channel: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = len.to_be_bytes().to_vec();
    v.push(kind);
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn wire_form_is_the_documented_layout() {
    let frame = Frame::Window {
        channel: 7,
        stream: Stream::Stderr,
        credit: 0x0102_0304,
    };
    assert_eq!(
        encode_to_bytes(&frame).unwrap().as_ref(),
        [0, 0, 0, 10, 3, 0, 0, 0, 7, 2, 1, 2, 3, 4]
    );
    let frame = Frame::Data {
        channel: 1,
        stream: Stream::Stdin,
        bytes: Bytes::from_static(b"hi"),
    };
    assert_eq!(
        encode_to_bytes(&frame).unwrap().as_ref(),
        [0, 0, 0, 8, 2, 0, 0, 0, 1, 0, b'h', b'i']
    );
    let frame = Frame::Eof {
        channel: 2,
        stream: Stream::Transfer,
    };
    assert_eq!(
        encode_to_bytes(&frame).unwrap().as_ref(),
        [0, 0, 0, 6, 4, 0, 0, 0, 2, 3]
    );
}

#[test]
fn limits_are_exact() {
    let at = |n| Frame::Data {
        channel: 1,
        stream: Stream::Stdout,
        bytes: Bytes::from(vec![1; n]),
    };
    let bytes = encode_to_bytes(&at(MAX_DATA_CHUNK)).unwrap();
    assert_eq!(decode_all(&bytes).unwrap(), [at(MAX_DATA_CHUNK)]);
    assert!(encode_to_bytes(&at(MAX_DATA_CHUNK + 1)).is_err());
    assert!(encode_to_bytes(&at(0)).is_err());
    let control = |n| Frame::Control {
        channel: 0,
        bytes: Bytes::from(vec![b' '; n]),
    };
    let bytes = encode_to_bytes(&control(MAX_CONTROL_LEN)).unwrap();
    assert_eq!(bytes.len(), 4 + MAX_FRAME_LEN);
    assert_eq!(decode_all(&bytes).unwrap(), [control(MAX_CONTROL_LEN)]);
    assert!(encode_to_bytes(&control(MAX_CONTROL_LEN + 1)).is_err());
    // An empty control payload frames fine (the message layer rejects it).
    let bytes = encode_to_bytes(&control(0)).unwrap();
    assert_eq!(decode_all(&bytes).unwrap(), [control(0)]);
}

#[test]
fn malformed_frames_are_fatal_and_named() {
    let too_long = (MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (too_long.to_vec(), "exceeds the limit"),
        (u32::MAX.to_be_bytes().to_vec(), "exceeds the limit"),
        (raw(4, 1, 0, &[])[..8].to_vec(), "at least 5"),
        (raw(0, 1, 0, &[])[..4].to_vec(), "at least 5"),
        (raw(5, 9, 0, &[]), "unknown frame kind 9"),
        (raw(5, 0, 0, &[]), "unknown frame kind 0"),
        (raw(5, 2, 1, &[]), "DATA frame cannot be 5"),
        (raw(6, 2, 1, &[0]), "DATA frame cannot be 6"),
        (raw(7, 2, 1, &[4, b'x']), "unknown stream 4"),
        (raw(7, 2, 0, &[1, b'x']), "channel 0"),
        (
            raw(6 + MAX_DATA_CHUNK as u32 + 1, 2, 1, &[]),
            "DATA frame cannot be",
        ),
        (raw(9, 3, 1, &[1, 0, 0, 1]), "WINDOW frame cannot be 9"),
        (
            raw(11, 3, 1, &[1, 0, 0, 0, 1, 0]),
            "WINDOW frame cannot be 11",
        ),
        (raw(10, 3, 1, &[1, 0, 0, 0, 0]), "at least one byte"),
        (raw(10, 3, 1, &[9, 0, 0, 0, 1]), "unknown stream 9"),
        (raw(5, 4, 1, &[]), "EOF frame cannot be 5"),
        (raw(7, 4, 1, &[1, 1]), "EOF frame cannot be 7"),
        (raw(6, 4, 0, &[1]), "channel 0"),
    ];
    for (bytes, needle) in cases {
        let mut d = FrameDecoder::new();
        d.feed(&bytes);
        let e = d.next_frame().unwrap_err();
        assert!(e.is_fatal());
        assert!(e.to_string().contains(needle), "{bytes:?}: {e}");
        // The error sticks, even when valid frames follow.
        d.feed(
            &encode_to_bytes(&Frame::Eof {
                channel: 1,
                stream: Stream::Stdin,
            })
            .unwrap(),
        );
        let again = d.next_frame().unwrap_err();
        assert_eq!(again.to_string(), e.to_string());
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn oversized_frames_fail_from_the_header_alone() {
    // Only the header has arrived: the decoder must not wait for (or buffer) the body.
    let mut d = FrameDecoder::new();
    d.feed(&raw(u32::MAX, 1, 0, &[]));
    assert!(d.next_frame().is_err());
    let mut d = FrameDecoder::new();
    d.feed(&raw(5000, 3, 1, &[]));
    assert!(d.next_frame().is_err());
}

#[test]
fn short_input_waits_for_more() {
    let bytes = encode_to_bytes(&Frame::Control {
        channel: 3,
        bytes: Bytes::from_static(b"{}"),
    })
    .unwrap();
    let mut d = FrameDecoder::new();
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(d.next_frame().unwrap(), None, "after {i} bytes");
        d.feed(&[*b]);
    }
    assert!(d.next_frame().unwrap().is_some());
    assert_eq!(d.next_frame().unwrap(), None);
    assert_eq!(d.buffered(), 0);
}

fn stream() -> impl Strategy<Value = Stream> {
    prop_oneof![
        Just(Stream::Stdin),
        Just(Stream::Stdout),
        Just(Stream::Stderr),
        Just(Stream::Transfer)
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(channel, b)| {
            Frame::Control {
                channel,
                bytes: b.into(),
            }
        }),
        (
            1..=u32::MAX,
            stream(),
            proptest::collection::vec(any::<u8>(), 1..300)
        )
            .prop_map(|(channel, stream, b)| Frame::Data {
                channel,
                stream,
                bytes: b.into()
            }),
        (1..=u32::MAX, stream(), 1..=u32::MAX).prop_map(|(channel, stream, credit)| {
            Frame::Window {
                channel,
                stream,
                credit,
            }
        }),
        (1..=u32::MAX, stream()).prop_map(|(channel, stream)| Frame::Eof { channel, stream }),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip_under_any_chunking(
        frames in proptest::collection::vec(frame(), 0..40),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            encode(f, &mut wire).unwrap();
        }
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        at.push(0);
        at.push(wire.len());
        at.sort_unstable();
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for w in at.windows(2) {
            d.feed(&wire[w[0]..w[1]]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 1..64usize,
    ) {
        let mut d = FrameDecoder::new();
        'feed: for piece in data.chunks(chunk) {
            d.feed(piece);
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        // Whatever decodes re-encodes to a frame that decodes the same.
                        let again = encode_to_bytes(&f).unwrap();
                        prop_assert_eq!(decode_all(&again).unwrap(), vec![f]);
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            prop_assert!(d.buffered() <= 4 + MAX_FRAME_LEN + chunk);
        }
    }
}
