//! A buffered writer at a position of the image file, with positional writes so two of them
//! (the data area and the metadata area) can fill one file without sharing a cursor.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Bytes gathered before one write: large enough that small files cost few syscalls.
const BUF_SIZE: usize = 1 << 20;

/// Bytes of zeros written at once for padding.
const ZEROS: [u8; 4096] = [0; 4096];

/// Sequential writes from some offset of `file` on.
pub(crate) struct Output<'f> {
    file: &'f File,
    buf: Vec<u8>,
    /// Offset of `buf[0]` in the file.
    start: u64,
}

impl<'f> Output<'f> {
    /// Writes from offset `at` of `file` on.
    pub fn new(file: &'f File, at: u64) -> Output<'f> {
        Output {
            file,
            buf: Vec::with_capacity(BUF_SIZE),
            start: at,
        }
    }

    /// Offset of the next byte written.
    pub fn pos(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Writes `data`.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.buf.len() + data.len() > BUF_SIZE {
            self.flush()?;
        }
        if data.len() >= BUF_SIZE {
            self.file.write_all_at(data, self.start)?;
            self.start += data.len() as u64;
        } else {
            self.buf.extend_from_slice(data);
        }
        Ok(())
    }

    /// Writes zeros up to offset `to` (nothing if already there or past it).
    pub fn zeros_to(&mut self, to: u64) -> io::Result<()> {
        while self.pos() < to {
            let n = (to - self.pos()).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    /// Reads once from `reader` straight into the buffer, at most `max` bytes; returns how
    /// many (0 at its end). Read errors are returned as they are, for the caller to sort.
    pub fn read_from(&mut self, reader: &mut impl Read, max: usize) -> Result<usize, ReadFrom> {
        if self.buf.len() == BUF_SIZE {
            self.flush().map_err(ReadFrom::Write)?;
        }
        let len = self.buf.len();
        let room = (BUF_SIZE - len).min(max.max(1));
        self.buf.resize(len + room, 0);
        let got = loop {
            match reader.read(&mut self.buf[len..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let n = got.as_ref().copied().unwrap_or(0);
        self.buf.truncate(len + n);
        got.map_err(ReadFrom::Read)
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.write_all_at(&self.buf, self.start)?;
        self.start += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// Which side of [`Output::read_from`] failed.
#[derive(Debug)]
pub(crate) enum ReadFrom {
    /// Reading the source.
    Read(io::Error),
    /// Writing out the full buffer.
    Write(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_outputs_fill_one_file() {
        let file = tempfile::tempfile().unwrap();
        let mut a = Output::new(&file, 0);
        let mut b = Output::new(&file, 10);
        b.write(b"world").unwrap();
        a.write(b"hello").unwrap();
        a.zeros_to(10).unwrap();
        let mut src: &[u8] = b"!!";
        assert_eq!(b.read_from(&mut src, 100).unwrap(), 2);
        assert_eq!(b.pos(), 17);
        a.flush().unwrap();
        b.flush().unwrap();
        let mut got = vec![0; 17];
        file.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got, b"hello\0\0\0\0\0world!!");
    }
}
