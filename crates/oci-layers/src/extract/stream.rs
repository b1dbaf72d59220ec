//! The layer byte stream: decompression on a thread of its own, the diff_id hash, and a
//! meter that caps (and keeps a copy of) the tar metadata the `tar` crate reads between two
//! entries.
//!
//! Reading and decompressing the blob is about half the work of extracting a big layer;
//! a decoding thread feeding the tar parser large chunks through a bounded channel lets it
//! overlap with creating the entries. The diff_id is hashed on the parser's side, which
//! evens out the two threads (hashing on the decoding side left it two thirds of the
//! work). Chunks go back to the decoder for reuse, so a layer of any size needs a fixed
//! handful of buffers.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::spec::Compression;

use super::path::MAX_PATH_LEN;
use super::pax::MAX_XATTR_SIZE;

/// Buffer size for the compressed side and for copying entry data: large reads keep the
/// per-call overhead of decompressors and syscalls small on big layers.
pub(crate) const BUF_SIZE: usize = 256 * 1024;

/// Size of one chunk of decompressed data handed from the decoding thread to the parser:
/// large enough that the channel costs nothing per byte, small enough to stay in cache
/// between being decoded, hashed and parsed.
const CHUNK_SIZE: usize = 512 * 1024;

/// Chunks the decoding thread may have queued ahead of the parser. With the one each side
/// holds, at most `CHUNKS_IN_FLIGHT + 2` chunks ever exist, whatever the layer's size.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Largest PAX extended header (`x` entry) accepted, in bytes.
///
/// It holds paths, link targets and extended attributes; real ones are a few hundred bytes,
/// and the cap bounds the memory one entry's metadata can take.
pub const MAX_PAX_SIZE: usize = 1024 * 1024 + 2 * MAX_XATTR_SIZE;

/// Most bytes the tar parser may read between two entries: the one cap of every tar
/// reader in the workspace, sized (see its comment) for this extractor's PAX headers.
pub(crate) use untar::MAX_ENTRY_METADATA;

// The largest PAX header accepted, a long name and a long link target must fit between two
// entries, with room for the headers around them.
const _: () = assert!(MAX_PAX_SIZE + 2 * MAX_PATH_LEN + 64 * 1024 <= MAX_ENTRY_METADATA);

/// Why reading the layer stream failed, decided by where the error arose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Reading the blob itself failed (an I/O error of the caller's reader).
    Source,
    /// The decompressor rejected the data: corrupt, truncated or trailing garbage.
    Decode,
    /// One entry's tar metadata exceeded [`MAX_ENTRY_METADATA`].
    MetadataTooLarge,
    /// The decompressed stream grew past the layer's size limit (`ExtractOptions::max_bytes`).
    TooLarge,
    /// The decompressed bytes are not a valid tar archive.
    Tar,
}

/// State shared between the layer reader and the extractor (both on the parsing thread).
#[derive(Default)]
pub(crate) struct Shared {
    source_failed: Cell<bool>,
    decode_failed: Cell<bool>,
    too_large: Cell<bool>,
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
        } else if self.too_large.get() {
            Failure::TooLarge
        } else if self.over_budget.get() {
            Failure::MetadataTooLarge
        } else {
            Failure::Tar
        }
    }

    /// Records that the stream failed for `failure`.
    fn fail(&self, failure: Failure) {
        let flag = match failure {
            Failure::Source => &self.source_failed,
            Failure::Decode => &self.decode_failed,
            Failure::TooLarge => &self.too_large,
            Failure::MetadataTooLarge => &self.over_budget,
            Failure::Tar => return,
        };
        flag.set(true);
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

/// Decompresses `blob` on a thread of its own while `consume` reads (and the reader hashes)
/// the decompressed stream on this one; returns what `consume` returns once that thread has
/// stopped. When `consume` returns early (its reader dropped), the thread stops after at
/// most the chunk it is decoding. The reader fails ([`Failure::TooLarge`]) as soon as the
/// stream grows past `max_bytes`. Fails only if decompression or the thread cannot start.
pub(crate) fn with_layer_reader<T>(
    blob: &mut (dyn Read + Send),
    compression: Compression,
    algorithm: Algorithm,
    max_bytes: u64,
    consume: impl for<'r> FnOnce(LayerReader<'r>, &'r Shared) -> T,
) -> io::Result<T> {
    let tap = SourceTap {
        inner: blob,
        failed: false,
    };
    let decoder = Decoder::new(BufReader::with_capacity(BUF_SIZE, tap), compression)?;
    let (data_tx, data_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
    let (recycle_tx, recycle_rx) = mpsc::sync_channel(CHUNKS_IN_FLIGHT + 2);
    let producer = Producer {
        decoder,
        data: data_tx,
        recycled: recycle_rx,
    };
    let shared = Shared::default();
    // The scope joins the decoding thread before returning; `consume` cannot keep the
    // reader (it borrows `shared`), so the receiver is gone by then and the thread stops.
    thread::scope(|scope| {
        thread::Builder::new()
            .name("layer-decode".into())
            .spawn_scoped(scope, move || producer.run())?;
        let reader = LayerReader {
            shared: &shared,
            data: data_rx,
            recycle: recycle_tx,
            hasher: Hasher::new(algorithm),
            bytes: 0,
            max_bytes,
            chunk: Vec::new(),
            at: 0,
            end: None,
            failed: None,
        };
        Ok(consume(reader, &shared))
    })
}

/// What the decoding thread sends the parser, in stream order.
enum Message {
    /// Decompressed bytes, never empty.
    Data(Vec<u8>),
    /// The decompressed stream ended after the data sent so far.
    End(End),
    /// Decoding stopped after the data sent so far: why, and the error.
    Failed(Failure, io::Error),
}

/// The outcome of a stream decoded to its end.
struct End {
    /// Chunks the decoder made.
    chunks: usize,
    /// Whether bytes follow the end of the compressed stream in the blob (or why that
    /// could not be read); judged only in [`LayerReader::finish`], so a tar that ends
    /// early still fails as a tar error, as it would without the lookahead.
    trailing: io::Result<bool>,
}

/// Marks that an error came from the blob itself rather than from the decompressor.
struct SourceTap<'a> {
    inner: &'a mut (dyn Read + Send),
    failed: bool,
}

impl Read for SourceTap<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        if result
            .as_ref()
            .is_err_and(|e| e.kind() != io::ErrorKind::Interrupted)
        {
            self.failed = true;
        }
        result
    }
}

type Source<'a> = BufReader<SourceTap<'a>>;

enum Decoder<'a> {
    Plain(Source<'a>),
    // Boxed: the gzip state is large.
    Gzip(Box<flate2::bufread::MultiGzDecoder<Source<'a>>>),
    Zstd(zstd::stream::read::Decoder<'static, Source<'a>>),
}

impl<'a> Decoder<'a> {
    fn new(source: Source<'a>, compression: Compression) -> io::Result<Decoder<'a>> {
        Ok(match compression {
            Compression::None => Decoder::Plain(source),
            Compression::Gzip => {
                Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(source)))
            }
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(source)?),
        })
    }

    fn source(&mut self) -> &mut Source<'a> {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.get_mut(),
            Decoder::Zstd(r) => r.get_mut(),
        }
    }

    /// Classifies an error returned by [`Read::read`]: a decoder error caused by a failed
    /// read of the blob is the blob's failure.
    fn failure(&mut self) -> Failure {
        match self.source().get_ref().failed {
            true => Failure::Source,
            false => Failure::Decode,
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

/// The decoding thread's side: decompresses the blob into chunks.
struct Producer<'a> {
    decoder: Decoder<'a>,
    data: SyncSender<Message>,
    recycled: Receiver<Vec<u8>>,
}

impl Producer<'_> {
    /// Decodes the whole stream, or until the parser hangs up (a failed send: the parser
    /// stopped early and wants nothing more).
    fn run(mut self) {
        let mut chunks = 0usize;
        let stopped = loop {
            // Never waits for the parser to return a chunk: a new one is made instead, and
            // the bound on chunks in flight bounds how many are ever made.
            let mut chunk = self.recycled.try_recv().unwrap_or_else(|_| {
                chunks += 1;
                Vec::new()
            });
            chunk.resize(CHUNK_SIZE, 0);
            let (filled, stopped) = self.fill(&mut chunk);
            chunk.truncate(filled);
            if filled > 0 && self.data.send(Message::Data(chunk)).is_err() {
                return;
            }
            if let Some(stopped) = stopped {
                break stopped;
            }
        };
        let message = match stopped {
            Ok(()) => Message::End(End {
                trailing: self
                    .decoder
                    .source()
                    .fill_buf()
                    .map(|rest| !rest.is_empty()),
                chunks,
            }),
            Err(e) => Message::Failed(self.decoder.failure(), e),
        };
        // An error here, too, only means the parser stopped early.
        let _ = self.data.send(message);
    }

    /// Decodes into `chunk` until it is full; returns the bytes decoded and, when the
    /// stream stopped, how.
    fn fill(&mut self, chunk: &mut [u8]) -> (usize, Option<io::Result<()>>) {
        let mut filled = 0;
        while filled < chunk.len() {
            match self.decoder.read(&mut chunk[filled..]) {
                Ok(0) => return (filled, Some(Ok(()))),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (filled, Some(Err(e))),
            }
        }
        (filled, None)
    }
}

/// The decompressed tar stream as the `tar` crate reads it.
pub(crate) struct LayerReader<'a> {
    shared: &'a Shared,
    data: Receiver<Message>,
    recycle: SyncSender<Vec<u8>>,
    /// The diff_id hash of the chunks received so far.
    hasher: Hasher,
    /// Bytes received so far.
    bytes: u64,
    /// Most bytes the stream may have; one more fails it.
    max_bytes: u64,
    /// The chunk being read, and how far.
    chunk: Vec<u8>,
    at: usize,
    /// Set once the stream has ended.
    end: Option<End>,
    /// The error the stream stopped with, repeated to later reads.
    failed: Option<(io::ErrorKind, String)>,
}

impl LayerReader<'_> {
    /// The unread rest of the current chunk, fetching the next one when it is used up;
    /// empty only at the end of the stream.
    fn fill(&mut self) -> io::Result<&[u8]> {
        while self.at == self.chunk.len() && self.end.is_none() {
            if let Some((kind, text)) = &self.failed {
                return Err(io::Error::new(*kind, text.clone()));
            }
            // Returned before the next is taken, so this side never holds two.
            let used = std::mem::take(&mut self.chunk);
            self.at = 0;
            if used.capacity() > 0 {
                // Fails only if the decoder has finished and needs no more chunks.
                let _ = self.recycle.try_send(used);
            }
            match self.data.recv() {
                Ok(Message::Data(chunk)) => {
                    self.bytes = self.bytes.saturating_add(chunk.len() as u64);
                    if self.bytes > self.max_bytes {
                        // Stops here: dropping the reader (the extraction fails) makes the
                        // decoding thread stop after at most the chunk it is on.
                        self.shared.fail(Failure::TooLarge);
                        let text = format!(
                            "the decompressed layer is larger than {} bytes",
                            self.max_bytes
                        );
                        self.failed = Some((io::ErrorKind::InvalidData, text.clone()));
                        return Err(io::Error::new(io::ErrorKind::InvalidData, text));
                    }
                    self.hasher.update(&chunk);
                    self.chunk = chunk;
                }
                Ok(Message::End(end)) => self.end = Some(end),
                Ok(Message::Failed(failure, e)) => {
                    self.shared.fail(failure);
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
                Err(mpsc::RecvError) => {
                    // The decoding thread panicked; the scope re-raises the panic.
                    let text = "the layer decoding thread stopped unexpectedly";
                    self.failed = Some((io::ErrorKind::Other, text.into()));
                    return Err(io::Error::other(text));
                }
            }
        }
        Ok(&self.chunk[self.at..])
    }

    /// Skips what follows the end of the tar archive (hashed all the same), checks that the
    /// compressed stream ended exactly, and returns the diff_id and the uncompressed size.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        self.shared.capturing.set(false);
        let end = loop {
            self.at = self.chunk.len();
            self.fill()?;
            if let Some(end) = self.end.take() {
                break end;
            }
        };
        debug_assert!(end.chunks <= CHUNKS_IN_FLIGHT + 2, "{} chunks", end.chunks);
        match end.trailing {
            Ok(false) => Ok((self.hasher.finish(), self.bytes)),
            Ok(true) => {
                self.shared.fail(Failure::Decode);
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data follows the end of the compressed stream",
                ))
            }
            Err(e) => {
                self.shared.fail(Failure::Source);
                Err(e)
            }
        }
    }
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let shared = self.shared;
        let mut want = buf.len();
        let capturing = shared.capturing.get();
        if capturing {
            let room = MAX_ENTRY_METADATA.saturating_sub(shared.capture.borrow().len());
            if room == 0 && want > 0 {
                shared.fail(Failure::MetadataTooLarge);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "tar metadata of one entry exceeds the size limit",
                ));
            }
            want = want.min(room);
        }
        if want == 0 {
            return Ok(0);
        }
        let available = self.fill()?;
        let n = available.len().min(want);
        buf[..n].copy_from_slice(&available[..n]);
        self.at += n;
        if capturing {
            shared.capture.borrow_mut().extend_from_slice(&buf[..n]);
        }
        shared.pos.set(shared.pos.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(blob: &[u8], compression: Compression) -> (io::Result<(Digest, u64)>, Failure) {
        let mut blob = blob;
        with_layer_reader(
            &mut blob,
            compression,
            Algorithm::Sha256,
            u64::MAX,
            |reader, shared| (reader.finish(), shared.failure()),
        )
        .unwrap()
    }

    /// `len` bytes of a repeating pattern, made as they are read; counts what was read.
    struct Endless<'a> {
        left: u64,
        read: &'a AtomicU64,
        /// Fail instead of ending when the bytes run out.
        then_fail: bool,
    }

    impl Read for Endless<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 && self.then_fail {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf
                .len()
                .min(usize::try_from(self.left).unwrap_or(usize::MAX));
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            self.left -= n as u64;
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
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
    fn every_byte_arrives_in_order_across_chunks() {
        let data: Vec<u8> = (0..5 * CHUNK_SIZE as u32 + 12_345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let gz = gzip(&data);
        let mut blob = &gz[..];
        let (read, result) = with_layer_reader(
            &mut blob,
            Compression::Gzip,
            Algorithm::Sha256,
            u64::MAX,
            |mut r, _| {
                // Odd read sizes straddle chunk boundaries.
                let mut out = Vec::new();
                let mut buf = [0; 777];
                loop {
                    match r.read(&mut buf).unwrap() {
                        0 => break,
                        n => out.extend_from_slice(&buf[..n]),
                    }
                }
                (out, r.finish())
            },
        )
        .unwrap();
        assert!(read == data, "the stream came out different");
        let digest = Digest::of(Algorithm::Sha256, &data);
        assert_eq!(result.unwrap(), (digest, data.len() as u64));
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
    fn a_decode_failure_comes_after_the_good_data() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let gz = gzip(&data);
        let cut = &gz[..gz.len() * 3 / 4];
        let mut blob = cut;
        let (got, err, failure) = with_layer_reader(
            &mut blob,
            Compression::Gzip,
            Algorithm::Sha256,
            u64::MAX,
            |mut r, s| {
                let mut got = Vec::new();
                let err = r.read_to_end(&mut got).unwrap_err();
                // A later read repeats the failure instead of pretending the stream ended.
                assert!(r.read(&mut [0; 16]).is_err());
                (got, err, s.failure())
            },
        )
        .unwrap();
        assert_eq!(failure, Failure::Decode, "{err}");
        assert!(
            got.len() > data.len() / 2,
            "only {} bytes arrived",
            got.len()
        );
        assert!(
            data.starts_with(&got),
            "the bytes before the failure differ"
        );
    }

    #[test]
    fn source_errors_are_told_apart() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let failure = with_layer_reader(
                &mut Broken,
                compression,
                Algorithm::Sha256,
                u64::MAX,
                |mut reader, shared| {
                    assert!(reader.read(&mut [0; 16]).is_err());
                    shared.failure()
                },
            )
            .unwrap();
            assert_eq!(failure, Failure::Source, "{compression:?}");
        }
    }

    #[test]
    fn a_source_error_comes_after_the_good_data() {
        let count = AtomicU64::new(0);
        let len = 3 * CHUNK_SIZE as u64 + 5;
        let mut src = Endless {
            left: len,
            read: &count,
            then_fail: true,
        };
        let (got, failure) = with_layer_reader(
            &mut src,
            Compression::None,
            Algorithm::Sha256,
            u64::MAX,
            |mut r, s| {
                let mut got = Vec::new();
                assert!(r.read_to_end(&mut got).is_err());
                (got.len() as u64, s.failure())
            },
        )
        .unwrap();
        assert_eq!((got, failure), (len, Failure::Source));
    }

    #[test]
    fn stopping_early_stops_the_decoder() {
        // The parser reads one byte of a big stream and gives up: the decoding thread must
        // not run on to the end (nor hang, keeping `with_layer_reader` from returning).
        let count = AtomicU64::new(0);
        let len = 1 << 30;
        let mut src = Endless {
            left: len,
            read: &count,
            then_fail: false,
        };
        with_layer_reader(
            &mut src,
            Compression::None,
            Algorithm::Sha256,
            u64::MAX,
            |mut r, _| {
                r.read_exact(&mut [0; 1]).unwrap();
                // Let the decoder fill the channel, so it is blocked when the reader goes.
                std::thread::sleep(std::time::Duration::from_millis(50));
            },
        )
        .unwrap();
        let bound = ((CHUNKS_IN_FLIGHT + 3) * CHUNK_SIZE + 2 * BUF_SIZE) as u64;
        let read = count.load(Ordering::Relaxed);
        assert!(
            read <= bound,
            "the decoder read {read} bytes after the parser stopped"
        );
    }

    #[test]
    fn chunks_are_reused() {
        // However long the stream, the decoder only ever makes a few chunks.
        let count = AtomicU64::new(0);
        let len = 64 * CHUNK_SIZE as u64;
        let mut src = Endless {
            left: len,
            read: &count,
            then_fail: false,
        };
        let chunks = with_layer_reader(
            &mut src,
            Compression::None,
            Algorithm::Sha256,
            u64::MAX,
            |mut r, _| {
                let mut buf = vec![0; 100_000];
                while r.read(&mut buf).unwrap() > 0 {
                    // A slow parser: the decoder runs ahead as far as it may.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                r.end.as_ref().map(|end| end.chunks)
            },
        )
        .unwrap()
        .unwrap();
        assert!(chunks <= CHUNKS_IN_FLIGHT + 2, "{chunks} chunks made");
        assert_eq!(count.load(Ordering::Relaxed), len);
    }

    #[test]
    fn the_size_limit_is_exact() {
        // Over several chunks, so the limit falls inside one.
        let data: Vec<u8> = (0..3 * CHUNK_SIZE as u32 + 5)
            .map(|i| (i % 249) as u8)
            .collect();
        let len = data.len() as u64;
        let read = |max_bytes: u64| {
            let mut blob = &data[..];
            with_layer_reader(
                &mut blob,
                Compression::None,
                Algorithm::Sha256,
                max_bytes,
                |mut r, s| {
                    let mut got = Vec::new();
                    let result = r.read_to_end(&mut got).map(|_| ());
                    // A later read repeats the failure instead of pretending the stream ended.
                    let again = r.read(&mut [0; 16]).is_err();
                    (result, again, got.len() as u64, s.failure(), r.finish())
                },
            )
            .unwrap()
        };
        let (result, again, got, _, finished) = read(len);
        assert!(result.is_ok() && !again, "{result:?}");
        assert_eq!(got, len);
        assert_eq!(finished.unwrap().1, len);
        let (result, again, got, failure, finished) = read(len - 1);
        let err = result.unwrap_err();
        assert_eq!(failure, Failure::TooLarge, "{err}");
        assert!(err.to_string().contains(&format!("{}", len - 1)), "{err}");
        assert!(again && finished.is_err());
        assert!(got < len, "the chunk over the limit was handed on");
    }

    #[test]
    fn a_bomb_stops_the_decoder_at_the_limit() {
        // An endless stream: the decoding thread must stop soon after the limit, not read on.
        let count = AtomicU64::new(0);
        let mut src = Endless {
            left: 1 << 40,
            read: &count,
            then_fail: false,
        };
        let max_bytes = 4 * CHUNK_SIZE as u64;
        let failure = with_layer_reader(
            &mut src,
            Compression::None,
            Algorithm::Sha256,
            max_bytes,
            |mut r, s| {
                assert!(r.read_to_end(&mut Vec::new()).is_err());
                s.failure()
            },
        )
        .unwrap();
        assert_eq!(failure, Failure::TooLarge);
        let bound = max_bytes + ((CHUNKS_IN_FLIGHT + 3) * CHUNK_SIZE + 2 * BUF_SIZE) as u64;
        let read = count.load(Ordering::Relaxed);
        assert!(read <= bound, "the decoder read {read} bytes");
    }

    #[test]
    fn capture_is_capped() {
        let data = vec![0u8; MAX_ENTRY_METADATA + 10];
        let mut blob = &data[..];
        let (failure, start, len) = with_layer_reader(
            &mut blob,
            Compression::None,
            Algorithm::Sha256,
            u64::MAX,
            |mut r, s| {
                s.begin_metadata(Vec::new());
                let mut sink = Vec::new();
                assert!(r.read_to_end(&mut sink).is_err());
                let (start, captured) = s.end_metadata();
                (s.failure(), start, captured.len())
            },
        )
        .unwrap();
        assert_eq!(failure, Failure::MetadataTooLarge);
        assert_eq!((start, len), (0, MAX_ENTRY_METADATA));
    }
}
