//! Random small layers, replacements and hard links included, written as images, mounted,
//! and compared with a model of what extracting the layer in order gives.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{Attrs, Layer, Mount, can_mount, write_image, write_merged};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    File {
        len: usize,
        mode: u32,
        uid: u64,
    },
    Dir {
        mode: u32,
    },
    Symlink,
    /// A hard link to the n-th file present at this point (if any).
    Link(usize),
}

#[derive(Clone, Debug, PartialEq)]
enum Want {
    File {
        data: Vec<u8>,
        mode: u32,
        uid: u64,
        group: usize,
    },
    Dir {
        mode: u32,
    },
    Symlink(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..9000, prop::sample::select(vec![0o644u32, 0o4755, 0o600, 0o1777]), prop::sample::select(vec![0u64, 1000, 70_000]))
            .prop_map(|(len, mode, uid)| Op::File { len, mode, uid }),
        2 => prop::sample::select(vec![0o755u32, 0o700, 0o2750]).prop_map(|mode| Op::Dir { mode }),
        1 => Just(Op::Symlink),
        1 => (0usize..8).prop_map(Op::Link),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "dd"]), 1..4)
        .prop_map(|v| v.join("/"))
}

fn under(path: &str, dir: &str) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// `path` or beneath it.
fn within(path: &str, dir: &str) -> bool {
    path == dir || under(path, dir)
}

/// Checks the mounted image at `root` holds exactly what `model` says.
fn check_image(
    root: &std::path::Path,
    model: &BTreeMap<String, Want>,
) -> Result<(), TestCaseError> {
    let mut inos: BTreeMap<usize, u64> = BTreeMap::new();
    let mut group_size: BTreeMap<usize, u64> = BTreeMap::new();
    for w in model.values() {
        if let Want::File { group, .. } = w {
            *group_size.entry(*group).or_default() += 1;
        }
    }
    for (p, want) in model {
        let full = root.join(p);
        let md =
            fs::symlink_metadata(&full).map_err(|e| TestCaseError::fail(format!("{p}: {e}")))?;
        match want {
            Want::File {
                data,
                mode,
                uid,
                group,
            } => {
                prop_assert_eq!(&fs::read(&full).unwrap(), data, "{}", p);
                prop_assert_eq!(md.mode(), 0o100000 | mode, "{}", p);
                prop_assert_eq!((md.uid(), md.gid()), (*uid as u32, *uid as u32));
                prop_assert_eq!(md.nlink(), group_size[group], "{}", p);
                let ino = *inos.entry(*group).or_insert(md.ino());
                prop_assert_eq!(ino, md.ino(), "{} shares its group's inode", p);
            }
            Want::Dir { mode } => prop_assert_eq!(md.mode(), 0o40000 | mode, "{}", p),
            Want::Symlink(t) => {
                prop_assert_eq!(fs::read_link(&full).unwrap(), std::path::PathBuf::from(t))
            }
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            found.push(
                e.path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found.sort();
    let want: Vec<&String> = model.keys().collect();
    prop_assert_eq!(
        found.iter().collect::<Vec<_>>(),
        want,
        "nothing more is in the image"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_layers_round_trip(ops in prop::collection::vec((path(), op()), 1..40)) {
        let mut layer = Layer::default();
        let mut model: BTreeMap<String, Want> = BTreeMap::new();
        let mut groups = 0usize;
        for (i, (p, op)) in ops.iter().enumerate() {
            // Entries beneath a non-directory are refused (tested elsewhere): skip them.
            let blocked = model.iter().any(|(q, w)| !matches!(w, Want::Dir { .. }) && under(p, q));
            if blocked {
                continue;
            }
            let want = match op {
                Op::File { len, mode, uid } => {
                    let data: Vec<u8> = (0..*len).map(|j| (i * 31 + j) as u8).collect();
                    layer.file_with(p, &data, &Attrs { mode: *mode, uid: *uid, gid: *uid, mtime: 1000 + i as u64 });
                    groups += 1;
                    Want::File { data, mode: *mode, uid: *uid, group: groups }
                }
                Op::Dir { mode } => {
                    layer.dir(p, *mode);
                    Want::Dir { mode: *mode }
                }
                Op::Symlink => {
                    let target = format!("target-{i}");
                    layer.symlink(p, &target);
                    Want::Symlink(target)
                }
                Op::Link(n) => {
                    let files: Vec<(String, Want)> = model.iter()
                        .filter(|(q, w)| matches!(w, Want::File { .. }) && *q != p)
                        .map(|(q, w)| (q.clone(), w.clone()))
                        .collect();
                    if files.is_empty() {
                        continue;
                    }
                    let (target, w) = files[n % files.len()].clone();
                    layer.hard_link(p, &target);
                    w
                }
            };
            match (&want, model.get(p)) {
                (Want::Dir { mode }, Some(Want::Dir { .. })) => {
                    model.insert(p.clone(), Want::Dir { mode: *mode });
                }
                _ => {
                    model.retain(|q, _| !under(q, p));
                    model.insert(p.clone(), want);
                }
            }
            // Parents the layer did not list are implied directories.
            let mut parent = p.as_str();
            while let Some(cut) = parent.rfind('/') {
                parent = &parent[..cut];
                model.entry(parent.to_string()).or_insert(Want::Dir { mode: 0o755 });
            }
        }
        let image = write_image(&layer.bytes());
        common::fsck(&image.path);
        if !can_mount() {
            return Ok(());
        }
        let m = Mount::erofs(&image.path);
        check_image(m.path(), &model)?;
    }
}

/// One entry of a layer of a random stack.
#[derive(Clone, Debug)]
enum LayerOp {
    Entry(Op),
    /// `.wh.NAME` next to the path, hiding it.
    Whiteout,
    /// `.wh..wh..opq` in the directory at the path.
    Opaque,
}

fn layer_op() -> impl Strategy<Value = LayerOp> {
    prop_oneof![
        6 => op().prop_map(LayerOp::Entry),
        1 => Just(LayerOp::Whiteout),
        1 => Just(LayerOp::Opaque),
    ]
}

/// The model of one layer as it is read: its own tree (as `random_layers_round_trip`'s
/// model), the directories it only implies, and its markers so far.
#[derive(Default)]
struct LayerModel {
    tree: BTreeMap<String, Want>,
    implied: std::collections::BTreeSet<String>,
    /// Paths `.wh.` markers hide.
    whiteouts: std::collections::BTreeSet<String>,
    /// Directories holding an opaque marker ("" for the root).
    opaque: std::collections::BTreeSet<String>,
}

impl LayerModel {
    fn blocked(&self, path: &str) -> bool {
        self.tree
            .iter()
            .any(|(q, w)| !matches!(w, Want::Dir { .. }) && under(path, q))
    }

    /// Makes `path`'s missing parents (and `path` itself when `and_self`) implied dirs.
    fn imply(&mut self, path: &str, and_self: bool) {
        let mut dirs = Vec::new();
        if and_self && !path.is_empty() {
            dirs.push(path.to_string());
        }
        let mut parent = path;
        while let Some(cut) = parent.rfind('/') {
            parent = &parent[..cut];
            dirs.push(parent.to_string());
        }
        for d in dirs {
            if !self.tree.contains_key(&d) {
                self.tree.insert(d.clone(), Want::Dir { mode: 0o755 });
                self.implied.insert(d);
            }
        }
    }

    /// Puts `want` at `path` as extracting the entry over the layer's own tree does.
    fn put(&mut self, path: &str, want: Want) {
        match (&want, self.tree.get(path)) {
            (Want::Dir { .. }, Some(Want::Dir { .. })) => {}
            _ => {
                self.tree.retain(|q, _| !under(q, path));
                self.implied.retain(|q| !under(q, path));
                self.whiteouts.retain(|q| !under(q, path));
                self.opaque.retain(|q| !within(q, path));
            }
        }
        self.implied.remove(path);
        self.tree.insert(path.to_string(), want);
        self.imply(path, false);
    }

    /// Whether the layer's markers and entries so far leave the lower `path` visible.
    fn sees_lower(&self, path: &str) -> bool {
        !self.tree.contains_key(path)
            && !self.whiteouts.iter().any(|w| within(path, w))
            && !self.opaque.iter().any(|o| under(path, o))
            && !self.blocked(path)
    }

    /// Stacks the layer on `merged`, as the whiteout crate does.
    fn apply(self, merged: &mut BTreeMap<String, Want>) {
        for w in &self.whiteouts {
            merged.retain(|q, _| !within(q, w));
        }
        for o in &self.opaque {
            merged.retain(|q, _| !under(q, o));
        }
        for (p, want) in self.tree {
            let lower_dir = matches!(merged.get(&p), Some(Want::Dir { .. }));
            let is_dir = matches!(want, Want::Dir { .. });
            if lower_dir && (is_dir && self.implied.contains(&p)) {
                continue;
            }
            if !(lower_dir && is_dir) {
                merged.retain(|q, _| !within(q, &p));
            }
            merged.insert(p, want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_stacks_merge(
        layers in prop::collection::vec(prop::collection::vec((path(), layer_op()), 0..16), 1..5)
    ) {
        let mut merged: BTreeMap<String, Want> = BTreeMap::new();
        let mut tars = Vec::new();
        let mut groups = 0usize;
        for (l, ops) in layers.iter().enumerate() {
            let mut layer = Layer::default();
            let mut model = LayerModel::default();
            for (i, (p, op)) in ops.iter().enumerate() {
                if model.blocked(p) {
                    continue;
                }
                let mtime = 1000 + (l * 100 + i) as u64;
                match op {
                    LayerOp::Whiteout => {
                        let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                        let marker = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
                        layer.file(&marker, b"");
                        model.whiteouts.insert(p.clone());
                        model.imply(p, false);
                    }
                    LayerOp::Opaque => {
                        if model.tree.get(p).is_some_and(|w| !matches!(w, Want::Dir { .. })) {
                            continue;
                        }
                        layer.file(&format!("{p}/.wh..wh..opq"), b"");
                        model.opaque.insert(p.clone());
                        model.imply(p, true);
                    }
                    LayerOp::Entry(Op::File { len, mode, uid }) => {
                        let data: Vec<u8> = (0..*len).map(|j| (l * 7 + i * 31 + j) as u8).collect();
                        layer.file_with(p, &data, &Attrs { mode: *mode, uid: *uid, gid: *uid, mtime });
                        groups += 1;
                        model.put(p, Want::File { data, mode: *mode, uid: *uid, group: groups });
                    }
                    LayerOp::Entry(Op::Dir { mode }) => {
                        layer.dir(p, *mode);
                        model.put(p, Want::Dir { mode: *mode });
                        if let Some(Want::Dir { mode: m }) = model.tree.get_mut(p) {
                            *m = *mode;
                        }
                    }
                    LayerOp::Entry(Op::Symlink) => {
                        let target = format!("target-{l}-{i}");
                        layer.symlink(p, &target);
                        model.put(p, Want::Symlink(target));
                    }
                    LayerOp::Entry(Op::Link(n)) => {
                        // Files of the layer, then those of the layers below it can see (but
                        // not a parent of the link, which the link's entry makes a directory
                        // first).
                        let own = model.tree.iter().filter(|(q, w)| matches!(w, Want::File { .. }) && *q != p);
                        let lower = merged.iter().filter(|(q, w)| {
                            matches!(w, Want::File { .. }) && !within(p, q) && model.sees_lower(q)
                        });
                        let files: Vec<(String, Want)> = own.chain(lower).map(|(q, w)| (q.clone(), w.clone())).collect();
                        if files.is_empty() {
                            continue;
                        }
                        let (target, w) = files[n % files.len()].clone();
                        layer.hard_link(p, &target);
                        model.put(p, w);
                    }
                }
            }
            tars.push(layer.bytes());
            model.apply(&mut merged);
        }
        let image = write_merged(&tars);
        common::fsck(&image.path);
        if !can_mount() {
            return Ok(());
        }
        let m = Mount::erofs(&image.path);
        check_image(m.path(), &merged)?;
    }
}
