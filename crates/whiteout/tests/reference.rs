//! `Stack` against two deliberately simple reference models on random layer stacks.
//!
//! `sequential` applies each layer to a plain map by the literal rules, scanning the
//! whole map for every step. `lookup` never builds intermediate views: like overlayfs,
//! it looks each path up from the top layer down. Both must agree with `Stack`.

// Helpers outside `#[test]` fns panic on purpose: a panic is how a test reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use whiteout::{EntryKind, LayerEntry, LayerPlan, Stack};

type View = BTreeMap<PathBuf, (EntryKind, usize)>;

/// What a marker entry asks for, decoded by hand rather than with `parse_marker`.
enum Marker {
    Whiteout(PathBuf),
    Opaque(PathBuf),
}

fn marker(path: &Path) -> Option<Marker> {
    let parent = path.parent().unwrap_or(Path::new("")).to_owned();
    let name = path.file_name()?.to_str()?;
    if name == ".wh..wh..opq" {
        Some(Marker::Opaque(parent))
    } else {
        name.strip_prefix(".wh.")
            .map(|hidden| Marker::Whiteout(parent.join(hidden)))
    }
}

/// One layer read naively: its listed entries (last wins), markers and implied dirs.
struct Layer {
    listed: HashMap<PathBuf, EntryKind>,
    whiteouts: HashSet<PathBuf>,
    opaque: HashSet<PathBuf>,
    implied: HashSet<PathBuf>,
}

fn read_layer(entries: &[LayerEntry]) -> Layer {
    let mut layer = Layer {
        listed: HashMap::new(),
        whiteouts: HashSet::new(),
        opaque: HashSet::new(),
        implied: HashSet::new(),
    };
    for entry in entries {
        match marker(&entry.path) {
            Some(Marker::Whiteout(target)) => drop(layer.whiteouts.insert(target)),
            Some(Marker::Opaque(dir)) => drop(layer.opaque.insert(dir)),
            None => drop(layer.listed.insert(entry.path.clone(), entry.kind)),
        }
    }
    for entry in entries {
        for ancestor in entry.path.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() && !layer.listed.contains_key(ancestor) {
                layer.implied.insert(ancestor.to_owned());
            }
        }
    }
    layer
}

fn depth(path: &Path) -> usize {
    path.components().count()
}

/// Applies layers one by one to a plain map: delete per markers, then insert each
/// path of the layer, shallowest first, replacing what conflicts.
fn sequential(layers: &[Vec<LayerEntry>]) -> View {
    let mut view = View::new();
    for (index, entries) in layers.iter().enumerate() {
        let layer = read_layer(entries);
        for target in &layer.whiteouts {
            view.retain(|path, _| !path.starts_with(target));
        }
        for dir in &layer.opaque {
            view.retain(|path, _| path == dir || !path.starts_with(dir));
        }
        let mut paths: Vec<(&PathBuf, Option<EntryKind>)> =
            layer.listed.iter().map(|(p, k)| (p, Some(*k))).collect();
        paths.extend(layer.implied.iter().map(|p| (p, None)));
        paths.sort_by_key(|(p, _)| depth(p));
        for (path, kind) in paths {
            let lower = view.get(path).map(|(k, _)| *k);
            match (lower, kind) {
                (Some(EntryKind::Dir), None) => continue,
                (Some(EntryKind::Dir), Some(EntryKind::Dir)) => {}
                (Some(_), _) => view.retain(|p, _| !p.starts_with(path)),
                (None, _) => {}
            }
            view.insert(path.clone(), (kind.unwrap_or(EntryKind::Dir), index));
        }
    }
    view
}

/// Looks every path up from the top layer down, as overlayfs does.
fn lookup(layers: &[Vec<LayerEntry>]) -> View {
    let layers: Vec<Layer> = layers.iter().map(|entries| read_layer(entries)).collect();
    let mut root = Vec::new();
    for index in (0..layers.len()).rev() {
        root.push(index);
        if layers[index].opaque.contains(Path::new("")) {
            break;
        }
    }
    let mut view = View::new();
    walk(&layers, Path::new(""), &root, &mut view);
    view
}

impl Layer {
    /// The path's kind in this layer and whether the layer lists it.
    fn get(&self, path: &Path) -> Option<(EntryKind, bool)> {
        match self.listed.get(path) {
            Some(kind) => Some((*kind, true)),
            None if self.implied.contains(path) => Some((EntryKind::Dir, false)),
            None => None,
        }
    }
}

/// Adds the children of `dir`, whose own children come from `sources` (top first).
fn walk(layers: &[Layer], dir: &Path, sources: &[usize], view: &mut View) {
    let mut names = BTreeSet::<OsString>::new();
    for &index in sources {
        let layer = &layers[index];
        for path in layer.listed.keys().chain(&layer.implied) {
            if path.parent() == Some(dir) {
                names.insert(path.file_name().unwrap().to_owned());
            }
        }
    }
    for name in names {
        let path = dir.join(name);
        let mut top = None;
        let mut holders = Vec::new(); // layers holding the directory itself, top first
        let mut children = Vec::new(); // layers whose children of `path` show
        let mut cut = false;
        for &index in sources {
            let layer = &layers[index];
            if let Some((kind, listed)) = layer.get(&path) {
                match (top, kind) {
                    (None, EntryKind::NonDir) => {
                        top = Some((EntryKind::NonDir, index));
                        break;
                    }
                    (None, EntryKind::Dir) => top = Some((EntryKind::Dir, index)),
                    (Some(_), EntryKind::Dir) => {}
                    (Some(_), EntryKind::NonDir) => break,
                }
                holders.push((index, listed));
                if !cut {
                    children.push(index);
                }
                cut |= layer.opaque.contains(&path);
            }
            if layer.whiteouts.contains(&path) {
                break;
            }
        }
        match top {
            None => {}
            Some((EntryKind::NonDir, index)) => drop(view.insert(path, (EntryKind::NonDir, index))),
            Some((EntryKind::Dir, _)) => {
                // The topmost layer that lists the directory provides it; if none
                // does, the layer that first implied it.
                let provider = holders
                    .iter()
                    .find(|(_, listed)| *listed)
                    .or(holders.last())
                    .map(|(index, _)| *index)
                    .unwrap();
                view.insert(path.clone(), (EntryKind::Dir, provider));
                walk(layers, &path, &children, view);
            }
        }
    }
}

fn stack_view(stack: &Stack) -> View {
    stack
        .entries()
        .map(|(p, k, l)| (p.to_owned(), (k, l)))
        .collect()
}

fn build(layers: &[Vec<LayerEntry>]) -> Stack {
    let mut stack = Stack::new();
    for layer in layers {
        stack.push(layer).unwrap();
    }
    stack
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn stack_matches_the_sequential_model(layers in common::stack(true)) {
        prop_assert_eq!(stack_view(&build(&layers)), sequential(&layers));
    }

    #[test]
    fn stack_matches_the_lookup_model(layers in common::stack(true)) {
        prop_assert_eq!(stack_view(&build(&layers)), lookup(&layers));
    }

    #[test]
    fn result_is_a_well_formed_tree(layers in common::stack(true)) {
        let stack = build(&layers);
        prop_assert_eq!(stack.len(), layers.len());
        let mut seen = BTreeMap::new();
        for (path, kind, provider) in stack.entries() {
            prop_assert!(!LayerPlan::is_marker(path), "marker {:?} in the result", path);
            prop_assert!(provider < stack.len());
            prop_assert!(!path.as_os_str().is_empty());
            let parent = path.parent().unwrap();
            if !parent.as_os_str().is_empty() {
                prop_assert_eq!(seen.get(parent), Some(&EntryKind::Dir), "parent of {:?}", path);
            }
            seen.insert(path.to_owned(), kind);
        }
    }

    #[test]
    fn entry_order_within_a_layer_only_matters_for_repeats(layers in common::stack(true)) {
        // Keeping only each path's last listing, then reversing, must change nothing.
        let dedup = |layer: &Vec<LayerEntry>| -> Vec<LayerEntry> {
            let mut out: Vec<LayerEntry> = Vec::new();
            for entry in layer.iter().rev() {
                if out.iter().all(|seen| seen.path != entry.path) {
                    out.push(entry.clone());
                }
            }
            out
        };
        let reordered: Vec<Vec<LayerEntry>> = layers.iter().map(dedup).collect();
        prop_assert_eq!(stack_view(&build(&layers)), stack_view(&build(&reordered)));
    }

    #[test]
    fn contradictory_layers_are_rejected(ops in common::ops()) {
        let entries: Vec<LayerEntry> = ops.iter().filter_map(|op| common::entry(op, true)).collect();
        let result = LayerPlan::new(&entries);
        prop_assert_eq!(result.is_err(), common::is_contradictory(&entries), "{:?}", result);
    }
}
