//! The reader under the tar parser: caps and keeps what it reads between two entries (so
//! the raw PAX records can be parsed here), and tells a failed source from a bad archive.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::ops::Range;
use std::rc::Rc;

use crate::MAX_ENTRY_METADATA;

/// Size of a tar block.
const BLOCK: usize = 512;

/// What the writer and the reader under the parser share (both on one thread).
#[derive(Default)]
pub(crate) struct Shared {
    capturing: Cell<bool>,
    captured: RefCell<Vec<u8>>,
    /// Bytes read from the source so far.
    pos: Cell<u64>,
    /// Where the current capture started.
    start: Cell<u64>,
    over: Cell<bool>,
    source_failed: Cell<bool>,
}

/// Why a read under the parser failed.
pub(crate) enum Failure {
    /// The source itself failed.
    Source,
    /// The metadata between two entries went past [`MAX_ENTRY_METADATA`].
    TooLarge,
    /// The bytes are not a valid tar archive.
    Tar,
}

impl Shared {
    /// From now until [`Shared::stop`], what the parser reads is metadata: capped and kept.
    pub fn start(&self) {
        self.captured.borrow_mut().clear();
        self.start.set(self.pos.get());
        self.capturing.set(true);
    }

    /// What the parser reads from now on is an entry's content.
    pub fn stop(&self) {
        self.capturing.set(false);
    }

    /// Why the last failed read failed.
    pub fn failure(&self) -> Failure {
        if self.over.get() {
            Failure::TooLarge
        } else if self.source_failed.get() {
            Failure::Source
        } else {
            Failure::Tar
        }
    }

    /// The data of the PAX `x` header among the blocks read before the header at
    /// `header_pos`, if there is one; `Err` if the blocks do not parse as the tar parser saw
    /// them (which would be a bug).
    pub fn pax(&self, header_pos: u64) -> Result<Option<Vec<u8>>, ()> {
        let captured = self.captured.borrow();
        let range = locate(&captured, self.start.get(), header_pos)?;
        Ok(range.map(|r| captured[r].to_vec()))
    }
}

/// The layer's source, metered.
pub(crate) struct Source<R> {
    inner: R,
    shared: Rc<Shared>,
}

impl<R> Source<R> {
    /// Meters `inner`, sharing its state with the writer.
    pub fn new(inner: R, shared: Rc<Shared>) -> Source<R> {
        Source { inner, shared }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let s = &self.shared;
        let mut want = buf.len();
        if s.capturing.get() {
            let room = MAX_ENTRY_METADATA.saturating_sub(s.captured.borrow().len());
            if room == 0 && want > 0 {
                s.over.set(true);
                return Err(io::Error::other("tar metadata over the limit"));
            }
            // Never read past the cap, so no more than it is ever buffered.
            want = want.min(room);
        }
        let n = self.inner.read(&mut buf[..want]).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                s.source_failed.set(true);
            }
        })?;
        if s.capturing.get() {
            s.captured.borrow_mut().extend_from_slice(&buf[..n]);
        }
        s.pos.set(s.pos.get() + n as u64);
        Ok(n)
    }
}

/// Locates the data of the last `x` header among the blocks `captured` (read from stream
/// offset `start`) before the entry header at `header_pos`. The parser has already checked
/// these blocks; they are walked again only to reach the raw records.
fn locate(captured: &[u8], start: u64, header_pos: u64) -> Result<Option<Range<usize>>, ()> {
    let end = usize::try_from(header_pos.checked_sub(start).ok_or(())?).map_err(|_| ())?;
    // The previous entry's data was read to its end, so only its padding comes first.
    let pad = start.next_multiple_of(BLOCK as u64) - start;
    let mut off = usize::try_from(pad).map_err(|_| ())?;
    let mut found = None;
    while off < end {
        let block = captured.get(off..off + BLOCK).ok_or(())?;
        let size = tar::Header::from_byte_slice(block)
            .entry_size()
            .map_err(|_| ())?;
        let size = usize::try_from(size).map_err(|_| ())?;
        let data = off + BLOCK..(off + BLOCK).checked_add(size).ok_or(())?;
        if data.end > captured.len() {
            return Err(());
        }
        if block[156] == b'x' {
            found = Some(data.clone());
        }
        off = data.start + size.next_multiple_of(BLOCK);
    }
    if off == end { Ok(found) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_metadata_but_not_content() {
        let shared = Rc::new(Shared::default());
        let data = vec![1u8; MAX_ENTRY_METADATA + 100];
        let mut src = Source::new(data.as_slice(), shared.clone());
        let mut sink = Vec::new();
        src.read_to_end(&mut sink).unwrap();
        assert_eq!(sink.len(), data.len());

        let mut src = Source::new(data.as_slice(), shared.clone());
        shared.start();
        let mut sink = Vec::new();
        assert!(src.read_to_end(&mut sink).is_err());
        assert_eq!(sink.len(), MAX_ENTRY_METADATA);
        assert!(matches!(shared.failure(), Failure::TooLarge));
    }

    #[test]
    fn tells_a_failed_source_from_a_bad_archive() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("wire cut"))
            }
        }
        let shared = Rc::new(Shared::default());
        assert!(matches!(shared.failure(), Failure::Tar));
        let mut src = Source::new(Broken, shared.clone());
        assert!(src.read(&mut [0; 8]).is_err());
        assert!(matches!(shared.failure(), Failure::Source));
    }
}
