//! The stream framing: `u32` big-endian length, then the frame.

/// Largest frame either way: passt's and QEMU's limit (a 64 KiB IP packet plus its Ethernet
/// header fits); a longer length on the wire means a broken peer.
pub const MAX_FRAME_LEN: usize = 65535 + 14;
/// The length prefix.
pub const PREFIX_LEN: usize = 4;

/// `frame` with its length prefix.
pub fn encode(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + frame.len());
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
    out
}

/// Reassembles frames from stream reads, holding at most one frame.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

/// A stream that announced a frame over [`MAX_FRAME_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized(pub usize);

impl Decoder {
    /// How many more bytes to read before a whole frame is here (0: one is).
    pub fn wanted(&self) -> std::result::Result<usize, Oversized> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(PREFIX_LEN - self.buf.len());
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME_LEN {
            return Err(Oversized(len));
        }
        Ok(PREFIX_LEN + len - self.buf.len())
    }

    /// Appends bytes read from the stream (at most [`Decoder::wanted`] of them).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The complete frame, if there is one.
    pub fn frame(&self) -> Option<&[u8]> {
        matches!(self.wanted(), Ok(0)).then(|| &self.buf[PREFIX_LEN..])
    }

    /// Forgets the complete frame.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let wire = [encode(b"hello"), encode(b""), encode(&[7; 300])].concat();
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            let want = d.wanted().unwrap();
            if want == 0 {
                frames.push(d.frame().unwrap().to_vec());
                d.clear();
                continue;
            }
            let n = want.min(1);
            d.push(&wire[at..at + n]);
            at += n;
        }
        frames.push(d.frame().unwrap().to_vec());
        assert_eq!(frames, vec![b"hello".to_vec(), vec![], vec![7; 300]]);
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut d = Decoder::default();
        d.push(&((MAX_FRAME_LEN + 1) as u32).to_be_bytes());
        assert_eq!(d.wanted(), Err(Oversized(MAX_FRAME_LEN + 1)));
        assert!(d.frame().is_none());
    }
}
