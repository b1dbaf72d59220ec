//! The reader under the tar parser: caps the bytes it reads between two entries and tells
//! a failure of the source from a malformed archive.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use crate::MAX_ENTRY_METADATA;
use crate::error::{Error, Limit};

/// What the unpacker and the reader under the parser share (both on one thread).
#[derive(Default)]
pub(crate) struct MeterState {
    metadata: Cell<bool>,
    used: Cell<usize>,
    over: Cell<bool>,
    source_failed: Cell<bool>,
}

impl MeterState {
    /// From now until [`MeterState::stop`], what the parser reads is metadata and capped.
    pub fn start(&self) {
        self.used.set(0);
        self.metadata.set(true);
    }

    /// What the parser reads from now on is an entry's content.
    pub fn stop(&self) {
        self.metadata.set(false);
    }

    /// The error for a failed read of the archive, by where it arose.
    pub fn error(&self, e: io::Error) -> Error {
        if self.over.get() {
            Error::Limit {
                limit: Limit::EntryMetadata,
                max: MAX_ENTRY_METADATA as u64,
            }
        } else if self.source_failed.get() {
            Error::Read(e)
        } else {
            Error::Invalid(format!("the archive is not a valid tar stream: {e}"))
        }
    }
}

/// The archive's source, metered.
pub(crate) struct Meter<R> {
    inner: R,
    state: Rc<MeterState>,
}

impl<R> Meter<R> {
    /// Meters `inner`, sharing its state with the unpacker.
    pub fn new(inner: R, state: Rc<MeterState>) -> Meter<R> {
        Meter { inner, state }
    }
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let state = &self.state;
        let mut want = buf.len();
        if state.metadata.get() {
            let room = MAX_ENTRY_METADATA - state.used.get();
            if room == 0 && want > 0 {
                state.over.set(true);
                return Err(io::Error::other("tar metadata over the limit"));
            }
            // Never read past the cap, so no more than it is ever buffered.
            want = want.min(room);
        }
        let n = self.inner.read(&mut buf[..want]).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                state.source_failed.set(true);
            }
        })?;
        if state.metadata.get() {
            state.used.set(state.used.get() + n);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_metadata_but_not_content() {
        let state = Rc::new(MeterState::default());
        let data = vec![1u8; MAX_ENTRY_METADATA + 100];
        let mut meter = Meter::new(data.as_slice(), state.clone());
        let mut sink = Vec::new();
        meter.read_to_end(&mut sink).unwrap();
        assert_eq!(sink.len(), data.len(), "content is not capped");

        let mut meter = Meter::new(data.as_slice(), state.clone());
        state.start();
        let mut sink = Vec::new();
        let err = meter.read_to_end(&mut sink).unwrap_err();
        assert_eq!(sink.len(), MAX_ENTRY_METADATA);
        assert!(matches!(
            state.error(err),
            Error::Limit {
                limit: Limit::EntryMetadata,
                ..
            }
        ));
    }

    #[test]
    fn tells_a_failed_source_from_a_bad_archive() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("wire cut"))
            }
        }
        let state = Rc::new(MeterState::default());
        let err = state.error(io::Error::other("bad header"));
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        let mut meter = Meter::new(Broken, state.clone());
        let e = meter.read(&mut [0; 8]).unwrap_err();
        assert!(matches!(state.error(e), Error::Read(_)));
    }
}
