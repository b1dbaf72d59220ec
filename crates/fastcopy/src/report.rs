//! What a copy did: counts per kind of entry and per data strategy.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::data::Strategy;

/// Counts of what was copied.
///
/// `files` counts regular files whose data was copied; a path that became a hard link to an
/// earlier copy counts in `hardlinks` only. `reflinked`, `copy_file_range` and `read_write`
/// count files by the strategy that moved their data; empty files move no data and count in none.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Regular files copied (not hard links).
    pub files: u64,
    /// Directories created or merged into, the top one of a tree included.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Paths created as hard links to an earlier copy of the same source inode.
    pub hardlinks: u64,
    /// Fifos, character and block devices, and unix sockets, all recreated with `mknod`.
    pub specials: u64,
    /// Bytes of regular file data (apparent sizes, holes included).
    pub bytes: u64,
    /// Files whose copy shares the source's extents.
    pub reflinked: u64,
    /// Files copied with `copy_file_range`.
    pub copy_file_range: u64,
    /// Files copied with `pread`/`pwrite`.
    pub read_write: u64,
    /// Extended attributes the destination filesystem refused as unsupported (`EOPNOTSUPP`).
    pub xattrs_skipped: u64,
}

impl Report {
    /// The strategy that copied the most files; ties go to the faster one; `None` if no file had data.
    pub fn strategy(&self) -> Option<Strategy> {
        [
            (Strategy::Reflink, self.reflinked),
            (Strategy::CopyFileRange, self.copy_file_range),
            (Strategy::ReadWrite, self.read_write),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .fold(None, |best: Option<(Strategy, u64)>, (s, n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((s, n)),
        })
        .map(|(s, _)| s)
    }

    /// How many files `strategy` copied.
    pub fn files_by(&self, strategy: Strategy) -> u64 {
        match strategy {
            Strategy::Reflink => self.reflinked,
            Strategy::CopyFileRange => self.copy_file_range,
            Strategy::ReadWrite => self.read_write,
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Report) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.symlinks += other.symlinks;
        self.hardlinks += other.hardlinks;
        self.specials += other.specials;
        self.bytes += other.bytes;
        self.reflinked += other.reflinked;
        self.copy_file_range += other.copy_file_range;
        self.read_write += other.read_write;
        self.xattrs_skipped += other.xattrs_skipped;
    }
}

/// [`Report`] as atomics, so copying threads count without a lock.
#[derive(Default, Debug)]
pub(crate) struct Counts {
    pub(crate) files: AtomicU64,
    pub(crate) dirs: AtomicU64,
    pub(crate) symlinks: AtomicU64,
    pub(crate) hardlinks: AtomicU64,
    pub(crate) specials: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) reflinked: AtomicU64,
    pub(crate) copy_file_range: AtomicU64,
    pub(crate) read_write: AtomicU64,
    pub(crate) xattrs_skipped: AtomicU64,
}

/// Adds `n` to a counter; the counts are only read after all copying threads are done.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counts {
    /// Counts one file moved by `strategy`.
    pub(crate) fn strategy(&self, strategy: Strategy) {
        add(
            match strategy {
                Strategy::Reflink => &self.reflinked,
                Strategy::CopyFileRange => &self.copy_file_range,
                Strategy::ReadWrite => &self.read_write,
            },
            1,
        );
    }

    /// The counts as a [`Report`].
    pub(crate) fn report(&self) -> Report {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Report {
            files: get(&self.files),
            dirs: get(&self.dirs),
            symlinks: get(&self.symlinks),
            hardlinks: get(&self.hardlinks),
            specials: get(&self.specials),
            bytes: get(&self.bytes),
            reflinked: get(&self.reflinked),
            copy_file_range: get(&self.copy_file_range),
            read_write: get(&self.read_write),
            xattrs_skipped: get(&self.xattrs_skipped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_is_the_most_used_and_none_without_data() {
        let mut r = Report::default();
        assert_eq!(r.strategy(), None);
        r.read_write = 2;
        r.copy_file_range = 3;
        assert_eq!(r.strategy(), Some(Strategy::CopyFileRange));
        r.reflinked = 3;
        assert_eq!(
            r.strategy(),
            Some(Strategy::Reflink),
            "ties go to the faster one"
        );
        assert_eq!(r.files_by(Strategy::ReadWrite), 2);
    }

    #[test]
    fn merge_adds_every_count() {
        let one = Report {
            files: 1,
            dirs: 2,
            symlinks: 3,
            hardlinks: 4,
            specials: 5,
            bytes: 6,
            reflinked: 7,
            copy_file_range: 8,
            read_write: 9,
            xattrs_skipped: 10,
        };
        let mut sum = one.clone();
        sum.merge(&one);
        assert_eq!(
            sum,
            Report {
                files: 2,
                dirs: 4,
                symlinks: 6,
                hardlinks: 8,
                specials: 10,
                bytes: 12,
                reflinked: 14,
                copy_file_range: 16,
                read_write: 18,
                xattrs_skipped: 20,
            }
        );
    }
}
