//! Moving file data: reflink (`FICLONE`), else `copy_file_range`, else `pread`/`pwrite`.
//!
//! Which of these works depends on the pair of filesystems, so the first strategy to try is
//! remembered per (source device, destination device): after a pair has answered "not
//! supported" once, no later file on that pair retries the failing syscall.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::{Mutex, PoisonError};

use rustix::fs::SeekFrom;
use rustix::io::Errno;

use crate::meta::Meta;

/// How a regular file's data reached its copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// The copy shares the source's extents (`ioctl(FICLONE)`), copy-on-write.
    Reflink,
    /// The kernel copied the data (`copy_file_range`), without a round trip through user space.
    CopyFileRange,
    /// Plain `pread`/`pwrite` through a buffer.
    ReadWrite,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::Reflink => "reflink",
            Strategy::CopyFileRange => "copy_file_range",
            Strategy::ReadWrite => "read/write",
        })
    }
}

/// Bytes per `pread`/`pwrite`; large enough that syscall overhead is small, per thread once.
const RW_CHUNK: usize = 1 << 20;
/// Bytes asked of one `copy_file_range` call; the kernel stops at about 2 GiB per call anyway.
const CFR_CHUNK: usize = 1 << 30;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What is known about one (source device, destination device) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair {
    /// The strategy the next file tries first.
    first: Strategy,
    /// `first` has worked once, so a later failure is about one file and does not demote the pair.
    proven: bool,
}

/// Copies file data and remembers what works per pair of devices; shared by all copying threads.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Where an unknown pair starts.
    start: Strategy,
    pairs: Mutex<HashMap<(u64, u64), Pair>>,
    /// Bytes per `copy_file_range` call; a field so tests can force many calls per file.
    cfr_chunk: usize,
}

/// The syscall answered "this pair of files or filesystems cannot do that"; try the next strategy.
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::NOTTY | Errno::BADF
    )
}

impl Engine {
    /// An engine whose pairs start with `start` (reflink for "best available").
    pub(crate) fn new(start: Strategy) -> Engine {
        Engine {
            start,
            pairs: Mutex::new(HashMap::new()),
            cfr_chunk: CFR_CHUNK,
        }
    }

    fn pair(&self, key: (u64, u64)) -> Pair {
        let pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        pairs.get(&key).copied().unwrap_or(Pair {
            first: self.start,
            proven: false,
        })
    }

    fn remember(&self, key: (u64, u64), pair: Pair) {
        let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
        pairs.insert(key, pair);
    }

    /// The strategy the next file from `src_dev` to `dst_dev` tries first.
    #[cfg(test)]
    pub(crate) fn first(&self, src_dev: u64, dst_dev: u64) -> Strategy {
        self.pair((src_dev, dst_dev)).first
    }

    /// Copies `meta.size` bytes of `src` into the empty file `dst` (on `dst_dev`).
    ///
    /// Returns the strategy that moved the data, `None` for an empty file. Errors are the
    /// syscall's; the caller names the path.
    pub(crate) fn copy(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        meta: &Meta,
        dst_dev: u64,
    ) -> rustix::io::Result<Option<Strategy>> {
        if meta.size == 0 {
            return Ok(None);
        }
        let key = (meta.dev, dst_dev);
        let before = self.pair(key);
        let mut pair = before;
        let used = self.copy_with(src, dst, meta, &mut pair)?;
        if used == pair.first && !pair.proven {
            pair.proven = true;
        }
        if pair != before {
            self.remember(key, pair);
        }
        Ok(Some(used))
    }

    fn copy_with(
        &self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        meta: &Meta,
        pair: &mut Pair,
    ) -> rustix::io::Result<Strategy> {
        let mut strategy = pair.first;
        let demote = |pair: &mut Pair, to: Strategy| {
            if !pair.proven {
                pair.first = to;
            }
        };
        if strategy == Strategy::Reflink {
            match rustix::fs::ioctl_ficlone(dst, src) {
                Ok(()) => return Ok(Strategy::Reflink),
                Err(e) if unsupported(e) => {
                    demote(pair, Strategy::CopyFileRange);
                    strategy = Strategy::CopyFileRange;
                }
                Err(e) => return Err(e),
            }
        }

        let sparse = meta.blocks.saturating_mul(512) < meta.size;
        let (mut pos, mut len) = (0, meta.size);
        // Whether copy_file_range has moved any byte of this file: then a later failure is
        // about this file, not the pair.
        let mut cfr_moved = false;
        while let Some((start, end)) = next_data(src, pos, meta.size, sparse)? {
            let mut off = start;
            if strategy == Strategy::CopyFileRange {
                let result = copy_range(src, dst, &mut off, end, self.cfr_chunk);
                cfr_moved |= off > start;
                match result {
                    Ok(()) => {}
                    Err(e) if unsupported(e) => {
                        if !cfr_moved {
                            demote(pair, Strategy::ReadWrite);
                        }
                        strategy = Strategy::ReadWrite;
                    }
                    Err(e) => return Err(e),
                }
            }
            if off < end {
                // Either read/write was chosen, or copy_file_range gave up or saw an early end
                // (a pseudo-filesystem, or a file that shrank); read/write finds out which.
                let before = off;
                rw_range(src, dst, &mut off, end)?;
                if off > before {
                    strategy = Strategy::ReadWrite;
                }
            }
            if off < end {
                // The source ended early: it shrank while being copied. Keep what was there.
                len = off;
                break;
            }
            pos = end;
        }
        if sparse {
            // A trailing hole is no data segment; the size says where the file ends.
            rustix::fs::ftruncate(dst, len)?;
        }
        Ok(strategy)
    }
}

/// The next data segment `[start, end)` at or after `from`; holes are skipped when `sparse`.
fn next_data(
    src: BorrowedFd<'_>,
    from: u64,
    len: u64,
    sparse: bool,
) -> rustix::io::Result<Option<(u64, u64)>> {
    if from >= len {
        return Ok(None);
    }
    if !sparse {
        return Ok(Some((from, len)));
    }
    let start = match rustix::fs::seek(src, SeekFrom::Data(from)) {
        Ok(start) => start,
        // Nothing but hole from here on.
        Err(Errno::NXIO) => return Ok(None),
        // The filesystem cannot tell holes apart: copy everything.
        Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(Some((from, len))),
        Err(e) => return Err(e),
    };
    if start >= len {
        return Ok(None);
    }
    let end = rustix::fs::seek(src, SeekFrom::Hole(start)).unwrap_or(len);
    Ok(Some((start, end.min(len))))
}

/// `copy_file_range` of `[*off, end)` in calls of at most `chunk` bytes; stops early at the
/// source's end. `*off` is how far it got, also on error.
fn copy_range(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    off: &mut u64,
    end: u64,
    chunk: usize,
) -> rustix::io::Result<()> {
    while *off < end {
        let want = usize::try_from(end - *off).unwrap_or(usize::MAX).min(chunk);
        let (mut off_in, mut off_out) = (*off, *off);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => return Ok(()),
            Ok(n) => *off += n as u64,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `pread`/`pwrite` of `[*off, end)` through the thread's buffer; stops early at the source's end.
fn rw_range(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    off: &mut u64,
    end: u64,
) -> rustix::io::Result<()> {
    BUFFER.with_borrow_mut(|buf| {
        buf.resize(RW_CHUNK, 0);
        while *off < end {
            let want = usize::try_from(end - *off)
                .unwrap_or(usize::MAX)
                .min(RW_CHUNK);
            let n = match rustix::io::pread(src, &mut buf[..want], *off) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            };
            let mut done = 0;
            while done < n {
                match rustix::io::pwrite(dst, &buf[done..n], *off + done as u64) {
                    Ok(0) => return Err(Errno::IO),
                    Ok(w) => done += w,
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
            }
            *off += n as u64;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Copies `src` to a new file with `engine`; returns (strategy, copied bytes, dst blocks).
    fn run(engine: &Engine, src: &std::path::Path) -> (Option<Strategy>, Vec<u8>, u64) {
        let dst = src.with_extension("copy");
        let _ = std::fs::remove_file(&dst);
        let (s, d) = (File::open(src).unwrap(), File::create_new(&dst).unwrap());
        let meta = Meta::lstat(src).unwrap();
        let dst_dev = Meta::lstat(&dst).unwrap().dev;
        let used = engine.copy(s.as_fd(), d.as_fd(), &meta, dst_dev).unwrap();
        drop(d);
        let blocks = Meta::lstat(&dst).unwrap().blocks;
        (used, std::fs::read(&dst).unwrap(), blocks)
    }

    #[test]
    fn copy_file_range_loops_over_short_calls() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big");
        let data = pattern(3 * 1024 * 1024 + 17);
        std::fs::write(&src, &data).unwrap();
        let mut engine = Engine::new(Strategy::CopyFileRange);
        engine.cfr_chunk = 64 * 1024 + 3; // dozens of calls, none aligned
        let (used, got, _) = run(&engine, &src);
        assert_eq!(used, Some(Strategy::CopyFileRange));
        assert!(got == data, "copy differs");
    }

    #[test]
    fn read_write_copies_more_than_one_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("big");
        let data = pattern(RW_CHUNK * 2 + 12_345);
        std::fs::write(&src, &data).unwrap();
        let (used, got, _) = run(&Engine::new(Strategy::ReadWrite), &src);
        assert_eq!(used, Some(Strategy::ReadWrite));
        assert!(got == data, "copy differs");
    }

    #[test]
    fn empty_file_moves_no_data() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("empty");
        std::fs::write(&src, b"").unwrap();
        let (used, got, _) = run(&Engine::new(Strategy::Reflink), &src);
        assert_eq!(used, None);
        assert!(got.is_empty());
    }

    #[test]
    fn holes_stay_holes_with_both_fallbacks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("sparse");
        let f = File::create_new(&src).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", 8 << 20).unwrap();
        f.set_len(32 << 20).unwrap(); // trailing hole
        drop(f);
        let mut want = vec![0u8; 32 << 20];
        want[..4].copy_from_slice(b"head");
        want[(8 << 20)..(8 << 20) + 6].copy_from_slice(b"middle");
        for strategy in [Strategy::ReadWrite, Strategy::CopyFileRange] {
            let (used, got, blocks) = run(&Engine::new(strategy), &src);
            assert_eq!(used, Some(strategy));
            assert!(got == want, "{strategy:?} copy differs");
            assert!(
                blocks * 512 < 1 << 20,
                "{strategy:?} filled holes: {blocks} blocks"
            );
        }
    }

    #[test]
    fn unsupported_reflink_is_tried_once_per_device_pair() {
        // /tmp is ext4 here: FICLONE answers EOPNOTSUPP, copy_file_range works.
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, b"data").unwrap();
        let engine = Engine::new(Strategy::Reflink);
        let dev = Meta::lstat(&src).unwrap().dev;
        if rustix::fs::ioctl_ficlone(
            File::create(dir.path().join("probe")).unwrap(),
            File::open(&src).unwrap(),
        )
        .is_ok()
        {
            eprintln!("skipped: {} supports reflink", dir.path().display());
            return;
        }
        assert_eq!(engine.first(dev, dev), Strategy::Reflink);
        let (used, got, _) = run(&engine, &src);
        assert_eq!(used, Some(Strategy::CopyFileRange));
        assert_eq!(got, b"data");
        assert_eq!(engine.first(dev, dev), Strategy::CopyFileRange);
        assert!(engine.pair((dev, dev)).proven);
        // A different pair is still undecided.
        assert_eq!(engine.first(dev, dev + 1), Strategy::Reflink);
    }

    #[test]
    fn across_filesystems_both_fallbacks_are_decided_once() {
        if !crate::testutil::root_or_skip("across_filesystems") {
            return;
        }
        let tmpfs = crate::testutil::mount::Mounted::memory("tmpfs");
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(100_000);
        let engine = Engine::new(Strategy::Reflink);
        let src_dev = Meta::lstat(dir.path()).unwrap().dev;
        let dst_dev = Meta::lstat(tmpfs.path()).unwrap().dev;
        for i in 0..3 {
            let src = dir.path().join(format!("f{i}"));
            std::fs::write(&src, &data).unwrap();
            let dst = tmpfs.path().join(format!("f{i}"));
            let (s, d) = (File::open(&src).unwrap(), File::create_new(&dst).unwrap());
            let meta = Meta::lstat(&src).unwrap();
            let used = engine.copy(s.as_fd(), d.as_fd(), &meta, dst_dev).unwrap();
            assert_eq!(used, Some(Strategy::ReadWrite));
            assert_eq!(
                engine.first(src_dev, dst_dev),
                Strategy::ReadWrite,
                "file {i}"
            );
            assert!(std::fs::read(&dst).unwrap() == data);
        }
    }
}
