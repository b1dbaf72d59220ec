use bytes::Bytes;

use super::state::{Batch, State};
use super::{BATCH_LIMIT, Lane};
use crate::frame::{Frame, FrameDecoder, Stream, encode_to_bytes};

fn frames(batch: Batch) -> Vec<Frame> {
    let Batch::Bytes(bytes) = batch else {
        panic!("expected bytes");
    };
    let mut d = FrameDecoder::new();
    d.feed(&bytes);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        out.push(f);
    }
    out
}

fn data(channel: u32, n: usize) -> Bytes {
    encode_to_bytes(&Frame::Data {
        channel,
        stream: Stream::Stdout,
        bytes: vec![0; n].into(),
    })
    .unwrap()
}

fn control(channel: u32) -> Bytes {
    encode_to_bytes(&Frame::Control {
        channel,
        bytes: Bytes::from_static(b"{}"),
    })
    .unwrap()
}

#[test]
fn credits_and_urgent_frames_overtake_queued_data() {
    let mut st = State::default();
    st.register((1, Stream::Stdin), true);
    for _ in 0..10 {
        st.push(data(2, 30_000), Lane::Ordered);
    }
    st.push(control(0), Lane::Urgent);
    // The peer sends a window's worth; the application reads it all: credit is due.
    for _ in 0..8 {
        st.on_data((1, Stream::Stdin), &[1; 32 * 1024]).unwrap();
    }
    assert!(st.consumed((1, Stream::Stdin), 256 * 1024));
    let first = frames(st.take_batch());
    assert!(
        matches!(first[0], Frame::Window { channel: 1, .. }),
        "{:?}",
        first[0]
    );
    assert!(matches!(first[1], Frame::Control { channel: 0, .. }));
    assert!(
        first[2..]
            .iter()
            .all(|f| matches!(f, Frame::Data { channel: 2, .. }))
    );
    // A batch stops near BATCH_LIMIT; the rest follows in order.
    let data_bytes: usize = first[2..].iter().map(Frame::encoded_len).sum();
    assert!(data_bytes < BATCH_LIMIT + 31_000, "{data_bytes}");
    let rest = frames(st.take_batch());
    assert_eq!(first.len() - 2 + rest.len(), 10);
    assert!(matches!(st.take_batch(), Batch::Empty));
    assert!(st.is_drained());
}

#[test]
fn a_dropped_reader_discards_and_regrants() {
    let mut st = State::default();
    let key = (3, Stream::Stdout);
    let gen_ = st.register(key, true);
    st.on_data(key, &[0; 100_000]).unwrap();
    assert_eq!(st.stats().buffered_in, 100_000);
    // Dropping the reader frees what it held; only what reaches the threshold is granted.
    assert!(!st.reader_dropped(key, gen_));
    assert_eq!(st.stats().buffered_in, 0);
    st.on_data(key, &[0; 50_000]).unwrap();
    let granted = frames(st.take_batch());
    assert_eq!(
        granted,
        [Frame::Window {
            channel: 3,
            stream: Stream::Stdout,
            credit: 150_000
        }]
    );
    // EOF lets the state go.
    st.on_eof(key);
    assert_eq!(st.stats().streams, 0);
}

#[test]
fn a_stale_handle_never_reaches_a_reused_key() {
    let mut st = State::default();
    let key = (4, Stream::Stdin);
    let old = st.register(key, true);
    let new = st.register(key, true);
    assert!(st.stream(key, old).is_none());
    assert!(!st.reader_dropped(key, old));
    assert!(st.stream(key, new).is_some());
}

#[test]
fn closing_a_channel_fails_its_streams_and_ends_its_writers() {
    let mut st = State::default();
    st.open.insert(5);
    let out = st.register((5, Stream::Stdout), false);
    st.register((5, Stream::Stdin), true);
    assert!(st.end_outputs(5));
    assert!(!st.end_outputs(5), "EOF is sent once");
    st.close_channel(5, "gone");
    assert!(st.open.is_empty());
    // Live handles keep their (failed) state until they drop; a dropped writer sends
    // nothing more.
    assert_eq!(st.stats().streams, 2);
    assert!(!st.writer_dropped((5, Stream::Stdout), out));
    assert_eq!(st.stats().streams, 1);
}
