//! Random layer stacks over a small alphabet, shared by the property tests.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use whiteout::{EntryKind, LayerEntry, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Few names, so that layers collide often; `a-b` sorts between `a`'s subtree and `b`.
const NAMES: [&str; 3] = ["a", "a-b", "b"];

/// One thing a generated layer does at a path.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    Dir,
    NonDir,
    Whiteout,
    Opaque,
}

/// A path (as name indices) and what the layer does there.
pub type Op = (Vec<usize>, Action);

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => Just(Action::NonDir),
        3 => Just(Action::Dir),
        2 => Just(Action::Whiteout),
        1 => Just(Action::Opaque),
    ]
}

/// Raw operations of one layer, which may contradict each other.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (prop::collection::vec(0..NAMES.len(), 0..=3), action()),
        0..14,
    )
}

/// The entry an operation stands for; `None` when it has no path to act on.
///
/// `root_opaque` allows an opaque marker at the layer root (an empty path).
pub fn entry((names, action): &Op, root_opaque: bool) -> Option<LayerEntry> {
    let path: PathBuf = names.iter().map(|&i| NAMES[i]).collect();
    let parent = path.parent().unwrap_or(Path::new("")).to_owned();
    let name = path.file_name().map(|n| n.to_str().unwrap().to_owned());
    match (action, name) {
        (Action::Opaque, None) if !root_opaque => None,
        (Action::Opaque, _) => Some(LayerEntry::non_dir(path.join(OPAQUE_MARKER))),
        (_, None) => None,
        (Action::Dir, Some(_)) => Some(LayerEntry::dir(path)),
        (Action::NonDir, Some(_)) => Some(LayerEntry::non_dir(path)),
        (Action::Whiteout, Some(name)) => Some(LayerEntry::non_dir(
            parent.join(format!("{WHITEOUT_PREFIX}{name}")),
        )),
    }
}

/// Paths whose last listing in `entries` is a non-directory.
fn final_non_dirs(entries: &[LayerEntry]) -> Vec<&Path> {
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let last = entries[i + 1..]
            .iter()
            .all(|later| later.path != entry.path);
        if last && entry.kind == EntryKind::NonDir {
            out.push(entry.path.as_path());
        }
    }
    out
}

/// Whether some entry lies beneath a path that the layer (last listing wins) declares
/// as a non-directory: the one way a generated layer can be invalid.
pub fn is_contradictory(entries: &[LayerEntry]) -> bool {
    let non_dirs = final_non_dirs(entries);
    entries.iter().any(|e| {
        non_dirs
            .iter()
            .any(|nd| e.path != *nd && e.path.starts_with(nd))
    })
}

/// Drops the entries that lie beneath a final non-directory, which makes a layer valid.
///
/// Entries at one path share their ancestors, so a path's last listing survives
/// whenever any listing of it does.
pub fn repair(entries: Vec<LayerEntry>) -> Vec<LayerEntry> {
    let non_dirs: Vec<PathBuf> = final_non_dirs(&entries)
        .into_iter()
        .map(Path::to_owned)
        .collect();
    entries
        .into_iter()
        .filter(|e| {
            !non_dirs
                .iter()
                .any(|nd| e.path != *nd && e.path.starts_with(nd))
        })
        .collect()
}

/// A stack of 1–4 valid random layers, bottom first.
pub fn stack(root_opaque: bool) -> impl Strategy<Value = Vec<Vec<LayerEntry>>> {
    prop::collection::vec(ops(), 1..=4).prop_map(move |layers| {
        layers
            .iter()
            .map(|ops| repair(ops.iter().filter_map(|op| entry(op, root_opaque)).collect()))
            .collect()
    })
}
