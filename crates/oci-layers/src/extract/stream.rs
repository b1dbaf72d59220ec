//! The layer byte stream: decompression, the diff_id hash, and a meter that caps (and
//! keeps a copy of) the tar metadata the `tar` crate reads between two entries.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use crate::digest::{Algorithm, Digest, HashingReader};
use crate::spec::Compression;

use super::path::MAX_PATH_LEN;
use super::pax::MAX_XATTR_SIZE;

/// Buffer size for both the compressed and the decompressed side: large reads keep the
/// per-call overhead of decompressors and syscalls small on big layers.
pub(crate) const BUF_SIZE: usize = 256 * 1024;

/// Largest PAX extended header (`x` entry) accepted, in bytes.
///
/// It holds paths, link targets and extended attributes; real ones are a few hundred bytes,
/// and the cap bounds the memory one entry's metadata can take.
pub const MAX_PAX_SIZE: usize = 1024 * 1024 + 2 * MAX_XATTR_SIZE;

/// Most bytes the tar parser may read between two entries: padding, headers, GNU long
/// name/link entries, the PAX header and GNU sparse maps. Anything larger is hostile (the
/// `tar` crate would otherwise buffer a long name or PAX header of any size in memory).
pub(crate) const MAX_ENTRY_METADATA: usize = MAX_PAX_SIZE + 2 * MAX_PATH_LEN + 64 * 1024;

/// Why reading the layer stream failed, decided by where the error arose.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Reading the blob itself failed (an I/O error of the caller's reader).
    Source,
    /// The decompressor rejected the data: corrupt, truncated or trailing garbage.
    Decode,
    /// One entry's tar metadata exceeded [`MAX_ENTRY_METADATA`].
    MetadataTooLarge,
    /// The decompressed bytes are not a valid tar archive.
    Tar,
}

/// State shared between the readers of the pipeline and the extractor.
#[derive(Default)]
pub(crate) struct Shared {
    source_failed: Cell<bool>,
    decode_failed: Cell<bool>,
    over_budget: Cell<bool>,
    capturing: Cell<bool>,
    /// Bytes the tar parser has read so far (its position in the archive).
    pos: Cell<u64>,
    /// Position when the current capture began.
    capture_start: Cell<u64>,
    capture: RefCell<Vec<u8>>,
}

impl Shared {
    /// Classifies an error that came out of reading the stream.
    pub fn failure(&self) -> Failure {
        if self.source_failed.get() {
            Failure::Source
        } else if self.decode_failed.get() {
            Failure::Decode
        } else if self.over_budget.get() {
            Failure::MetadataTooLarge
        } else {
            Failure::Tar
        }
    }

    /// Starts keeping (and capping) the bytes the tar parser reads, from the current position.
    pub fn begin_metadata(&self, buffer: Vec<u8>) {
        let mut buffer = buffer;
        buffer.clear();
        *self.capture.borrow_mut() = buffer;
        self.capture_start.set(self.pos.get());
        self.capturing.set(true);
    }

    /// Stops capturing; returns the archive position where the capture began and the bytes.
    pub fn end_metadata(&self) -> (u64, Vec<u8>) {
        self.capturing.set(false);
        (self.capture_start.get(), self.capture.take())
    }
}

/// Marks on `shared` that an error came from the stage it wraps.
struct Tap<R> {
    inner: R,
    shared: Rc<Shared>,
    decoder: bool,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        match &result {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                let flag = match self.decoder {
                    true if self.shared.source_failed.get() => &self.shared.source_failed,
                    true => &self.shared.decode_failed,
                    false => &self.shared.source_failed,
                };
                flag.set(true);
            }
            _ => {}
        }
        result
    }
}

type Source<'a> = BufReader<Tap<&'a mut dyn Read>>;

enum Decoder<'a> {
    Plain(Source<'a>),
    // Boxed: the gzip state is large, and the enum lives inside other readers.
    Gzip(Box<flate2::bufread::MultiGzDecoder<Source<'a>>>),
    Zstd(zstd::stream::read::Decoder<'static, Source<'a>>),
}

impl Decoder<'_> {
    fn source(&mut self) -> &mut dyn BufRead {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.get_mut(),
            Decoder::Zstd(r) => r.get_mut(),
        }
    }
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

/// The decompressed tar stream as the `tar` crate reads it.
pub(crate) struct LayerReader<'a> {
    inner: BufReader<HashingReader<Tap<Decoder<'a>>>>,
    shared: Rc<Shared>,
}

impl<'a> LayerReader<'a> {
    /// Sets up decompression and hashing of `blob`.
    pub fn new(
        blob: &'a mut dyn Read,
        compression: Compression,
        algorithm: Algorithm,
    ) -> io::Result<(LayerReader<'a>, Rc<Shared>)> {
        let shared = Rc::new(Shared::default());
        let tap = Tap {
            inner: blob,
            shared: shared.clone(),
            decoder: false,
        };
        let source = BufReader::with_capacity(BUF_SIZE, tap);
        let decoder = match compression {
            Compression::None => Decoder::Plain(source),
            Compression::Gzip => {
                Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(source)))
            }
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(source)?),
        };
        let tap = Tap {
            inner: decoder,
            shared: shared.clone(),
            decoder: true,
        };
        let hashing = HashingReader::new(tap, algorithm);
        let reader = LayerReader {
            inner: BufReader::with_capacity(BUF_SIZE, hashing),
            shared: shared.clone(),
        };
        Ok((reader, shared))
    }

    /// Reads what follows the end of the tar archive (the hash covers it), checks that the
    /// compressed stream ended exactly, and returns the diff_id and the uncompressed size.
    pub fn finish(mut self, scratch: &mut [u8]) -> io::Result<(Digest, u64)> {
        self.shared.capturing.set(false);
        while self.read(scratch)? != 0 {}
        let (mut tap, digest) = self.inner.into_inner().finish();
        let size = self.shared.pos.get();
        if !tap.inner.source().fill_buf()?.is_empty() {
            self.shared.decode_failed.set(true);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "data follows the end of the compressed stream",
            ));
        }
        Ok((digest, size))
    }
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let shared = &self.shared;
        if !shared.capturing.get() {
            let n = self.inner.read(buf)?;
            shared.pos.set(shared.pos.get() + n as u64);
            return Ok(n);
        }
        let mut capture = shared.capture.borrow_mut();
        let room = MAX_ENTRY_METADATA.saturating_sub(capture.len());
        if room == 0 && !buf.is_empty() {
            shared.over_budget.set(true);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "tar metadata of one entry exceeds the size limit",
            ));
        }
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        capture.extend_from_slice(&buf[..n]);
        shared.pos.set(shared.pos.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(blob: &[u8], compression: Compression) -> (io::Result<(Digest, u64)>, Failure) {
        let mut blob = blob;
        let (reader, shared) = LayerReader::new(&mut blob, compression, Algorithm::Sha256).unwrap();
        let mut scratch = vec![0; 4096];
        let result = reader.finish(&mut scratch);
        let failure = shared.failure();
        (result, failure)
    }

    #[test]
    fn hashes_the_decompressed_bytes() {
        let data = vec![7u8; 100_000];
        let (ok, _) = read_all(&gzip(&data), Compression::Gzip);
        assert_eq!(
            ok.unwrap(),
            (Digest::of(Algorithm::Sha256, &data), data.len() as u64)
        );
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        let (ok, _) = read_all(&zst, Compression::Zstd);
        assert_eq!(ok.unwrap().0, Digest::of(Algorithm::Sha256, &data));
    }

    #[test]
    fn concatenated_gzip_members_are_one_stream() {
        let mut blob = gzip(b"hello ");
        blob.extend(gzip(b"world"));
        let (ok, _) = read_all(&blob, Compression::Gzip);
        assert_eq!(ok.unwrap().0, Digest::of(Algorithm::Sha256, b"hello world"));
    }

    #[test]
    fn truncation_and_garbage_are_decode_failures() {
        let data = vec![1u8; 50_000];
        let gz = gzip(&data);
        let zst = zstd::encode_all(&data[..], 1).unwrap();
        let cases = [
            (gz[..gz.len() - 4].to_vec(), Compression::Gzip),
            ([&gz[..], b"junk"].concat(), Compression::Gzip),
            (zst[..zst.len() - 3].to_vec(), Compression::Zstd),
            ([&zst[..], b"junk"].concat(), Compression::Zstd),
        ];
        for (blob, compression) in cases {
            let (result, failure) = read_all(&blob, compression);
            assert!(result.is_err(), "{compression:?} accepted");
            assert_eq!(failure, Failure::Decode);
        }
    }

    #[test]
    fn source_errors_are_told_apart() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut src = Broken;
        let (mut reader, shared) =
            LayerReader::new(&mut src, Compression::Gzip, Algorithm::Sha256).unwrap();
        assert!(reader.read(&mut [0; 16]).is_err());
        assert_eq!(shared.failure(), Failure::Source);
    }

    #[test]
    fn capture_is_capped() {
        let data = vec![0u8; MAX_ENTRY_METADATA + 10];
        let mut blob = &data[..];
        let (mut reader, shared) =
            LayerReader::new(&mut blob, Compression::None, Algorithm::Sha256).unwrap();
        shared.begin_metadata(Vec::new());
        let mut sink = Vec::new();
        assert!(reader.read_to_end(&mut sink).is_err());
        assert_eq!(shared.failure(), Failure::MetadataTooLarge);
        let (start, captured) = shared.end_metadata();
        assert_eq!((start, captured.len()), (0, MAX_ENTRY_METADATA));
    }
}
