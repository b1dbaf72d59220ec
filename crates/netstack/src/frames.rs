//! The guest stream's framing: a `u32` big-endian length, then an Ethernet frame (QEMU's
//! `-netdev stream`, passt's protocol, boxlite-vmm's net device).

use std::io::{self, Read, Write};
use std::ops::Range;

/// Largest frame either way: passt's and QEMU's limit (a 64 KiB IP packet plus its Ethernet
/// header); a longer length on the wire means a broken peer.
pub const MAX_FRAME_LEN: usize = 65535 + 14;
/// Smallest frame: an Ethernet header.
pub const MIN_FRAME_LEN: usize = 14;
/// The length prefix.
pub const PREFIX_LEN: usize = 4;

/// How much one read from the guest may bring: many frames per wakeup, so a bulk transfer
/// costs one syscall per ~170 full-size frames; at least one largest frame must fit.
const READ_BUF_LEN: usize = 256 * 1024;
/// Frames queued for the guest before the stack stops producing: enough to keep the socket
/// busy between wakeups, small enough that a guest that stops reading pins little memory.
const WRITE_HIGH_WATER: usize = 512 * 1024;

const _: () = assert!(READ_BUF_LEN >= PREFIX_LEN + MAX_FRAME_LEN);

/// A stream that announced a frame over [`MAX_FRAME_LEN`]: a broken peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized(pub usize);

/// Reassembles frames from batched stream reads into one fixed buffer.
pub struct Reader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            buf: vec![0; READ_BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl Reader {
    /// Reads once from `src` (Ok(0): end of stream), after moving a partial frame to the
    /// front so the largest frame always fits.
    pub fn fill(&mut self, src: &mut impl Read) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// The next complete frame's place in [`Reader::bytes`], if one is here.
    pub fn next_frame(&mut self) -> Result<Option<Range<usize>>, Oversized> {
        let have = &self.buf[self.start..self.end];
        let Some(prefix) = have.first_chunk::<PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME_LEN {
            return Err(Oversized(len));
        }
        if have.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        let at = self.start + PREFIX_LEN;
        self.start = at + len;
        Ok(Some(at..at + len))
    }

    /// The buffer frames' ranges index.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Frames waiting to be written to the guest, prefixes included.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
    head: usize,
}

impl Writer {
    /// Whether another frame may be queued.
    pub fn has_room(&self) -> bool {
        self.buf.len() - self.head < WRITE_HIGH_WATER
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.head == self.buf.len()
    }

    /// Queues a `len`-byte frame that `fill` writes in place.
    pub fn push_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> R {
        let at = self.buf.len();
        // Frames are at most 64 KiB by construction; `u32` holds any `len` the stack makes.
        self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        self.buf.resize(at + PREFIX_LEN + len, 0);
        fill(&mut self.buf[at + PREFIX_LEN..])
    }

    /// Writes as much as `dst` takes; Ok(true) when all is written.
    pub fn flush(&mut self, dst: &mut impl Write) -> io::Result<bool> {
        while self.head < self.buf.len() {
            match dst.write(&self.buf[self.head..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.head += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
            return Ok(true);
        }
        if self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: &[u8]) -> Vec<u8> {
        [&(frame.len() as u32).to_be_bytes()[..], frame].concat()
    }

    #[test]
    fn frames_round_trip_in_any_split() {
        let wire = [encode(b"hello"), encode(b""), encode(&[7; 300])].concat();
        for split in 1..wire.len() {
            let mut r = Reader::default();
            let mut frames = Vec::new();
            for part in wire.chunks(split) {
                let mut src = part;
                r.fill(&mut src).unwrap();
                while let Some(f) = r.next_frame().unwrap() {
                    frames.push(r.bytes()[f].to_vec());
                }
            }
            assert_eq!(frames, vec![b"hello".to_vec(), vec![], vec![7; 300]]);
        }
    }

    #[test]
    fn an_oversized_length_is_an_error() {
        let mut r = Reader::default();
        let mut src = &((MAX_FRAME_LEN + 1) as u32).to_be_bytes()[..];
        r.fill(&mut src).unwrap();
        assert_eq!(r.next_frame(), Err(Oversized(MAX_FRAME_LEN + 1)));
    }

    #[test]
    fn a_largest_frame_fits_after_a_partial_one() {
        let wire = [encode(&[1; 100]), encode(&[2; MAX_FRAME_LEN])].concat();
        let mut r = Reader::default();
        let mut src = &wire[..];
        let mut got = Vec::new();
        while r.fill(&mut src).unwrap() > 0 {
            while let Some(f) = r.next_frame().unwrap() {
                got.push(f.len());
            }
        }
        assert_eq!(got, vec![100, MAX_FRAME_LEN]);
    }

    #[test]
    fn writer_flushes_through_a_narrow_pipe() {
        struct Narrow(Vec<u8>, usize);
        impl Write for Narrow {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.1 == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = b.len().min(3).min(self.1);
                self.1 -= n;
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Writer::default();
        w.push_with(5, |b| b.copy_from_slice(b"abcde"));
        let mut out = Narrow(Vec::new(), 4);
        assert!(!w.flush(&mut out).unwrap());
        out.1 = 100;
        assert!(w.flush(&mut out).unwrap());
        assert_eq!(out.0, encode(b"abcde"));
        assert!(w.is_empty());
    }
}
