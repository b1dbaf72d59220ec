//! Bookkeeping of one extraction: the layer's explicit entries, and the directories whose
//! mode and times are applied once everything else is in place.
//!
//! Both are maps keyed by normalised path, so a later entry at the same path simply wins,
//! and forgetting a replaced tree costs only what it removes (a hostile layer replacing a
//! directory over and over cannot make each replacement rescan everything).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use whiteout::{EntryKind, LayerEntry};

use super::meta::Meta;

/// What one extraction has created so far.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Path to (creation order, kind).
    entries: BTreeMap<Vec<u8>, (u64, EntryKind)>,
    dirs: BTreeMap<Vec<u8>, Meta>,
    seq: u64,
}

impl Ledger {
    /// Records an entry created at `path`, replacing any earlier one there.
    pub fn entry(&mut self, path: &[u8], kind: EntryKind) {
        self.seq += 1;
        self.entries.insert(path.to_vec(), (self.seq, kind));
    }

    /// Records the final mode and times of the directory at `path`.
    pub fn dir(&mut self, path: &[u8], meta: Meta) {
        self.dirs.insert(path.to_vec(), meta);
    }

    /// Forgets `path` and everything below it (it was removed to make way for a new entry).
    pub fn forget_tree(&mut self, path: &[u8]) {
        forget(&mut self.entries, path);
        forget(&mut self.dirs, path);
    }

    /// The entries in the order they were (last) created, and the directories deepest first.
    pub fn finish(self) -> (Vec<LayerEntry>, Vec<(Vec<u8>, Meta)>) {
        let mut entries: Vec<_> = self.entries.into_iter().collect();
        entries.sort_unstable_by_key(|(_, (seq, _))| *seq);
        let entries = entries
            .into_iter()
            .map(|(path, (_, kind))| LayerEntry::new(OsStr::from_bytes(&path), kind))
            .collect();
        let mut dirs: Vec<_> = self.dirs.into_iter().collect();
        // Deepest first, so setting a directory's times is not undone by work on a child;
        // siblings stay adjacent, so their shared parent is opened once.
        let depth = |p: &[u8]| p.iter().filter(|&&b| b == b'/').count();
        dirs.sort_by(|(a, _), (b, _)| depth(b).cmp(&depth(a)).then_with(|| a.cmp(b)));
        (entries, dirs)
    }
}

fn forget<V>(map: &mut BTreeMap<Vec<u8>, V>, path: &[u8]) {
    map.remove(path);
    // Everything below `path` sorts between "path/" and "path0" ('0' follows '/').
    let mut low = path.to_vec();
    low.push(b'/');
    let mut high = path.to_vec();
    high.push(b'0');
    let below: Vec<Vec<u8>> = map.range(low..high).map(|(k, _)| k.clone()).collect();
    for key in below {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::Timespec;

    fn meta(mode: u32) -> Meta {
        let t = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        Meta {
            mode,
            uid: 0,
            gid: 0,
            mtime: t,
            atime: t,
        }
    }

    #[test]
    fn later_entries_win_and_keep_their_new_position() {
        let mut l = Ledger::default();
        l.entry(b"a", EntryKind::Dir);
        l.entry(b"b", EntryKind::NonDir);
        l.entry(b"a", EntryKind::NonDir);
        let (entries, _) = l.finish();
        assert_eq!(
            entries,
            [LayerEntry::non_dir("b"), LayerEntry::non_dir("a")]
        );
    }

    #[test]
    fn forgetting_a_tree_spares_its_neighbours() {
        let mut l = Ledger::default();
        for p in ["a", "a/b", "a/b/c", "a.txt", "a0", "ab", "b"] {
            l.entry(p.as_bytes(), EntryKind::NonDir);
            l.dir(p.as_bytes(), meta(0o700));
        }
        l.forget_tree(b"a");
        let (entries, dirs) = l.finish();
        let names: Vec<_> = entries.iter().map(|e| e.path.to_str().unwrap()).collect();
        assert_eq!(names, ["a.txt", "a0", "ab", "b"]);
        assert_eq!(dirs.len(), 4);
    }

    #[test]
    fn directories_come_deepest_first() {
        let mut l = Ledger::default();
        for p in ["x", "x/y/z", "x/y", "w/v"] {
            l.dir(p.as_bytes(), meta(0o755));
        }
        l.dir(b"x/y", meta(0o700)); // a repeated directory: the last one wins
        let (_, dirs) = l.finish();
        let order: Vec<_> = dirs
            .iter()
            .map(|(p, _)| std::str::from_utf8(p).unwrap())
            .collect();
        assert_eq!(order, ["x/y/z", "w/v", "x/y", "x"]);
        assert_eq!(dirs[2].1.mode, 0o700);
    }
}
