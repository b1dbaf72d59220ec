use super::*;
use EntryKind::{Dir, NonDir};

fn d(path: &str) -> LayerEntry {
    LayerEntry::dir(path)
}

fn f(path: &str) -> LayerEntry {
    LayerEntry::non_dir(path)
}

fn stack(layers: &[&[LayerEntry]]) -> Stack {
    let mut stack = Stack::new();
    for layer in layers {
        stack.push(*layer).unwrap();
    }
    stack
}

/// The result as `(path, kind, provider)` triples, in `entries()` order.
fn view(stack: &Stack) -> Vec<(String, EntryKind, usize)> {
    stack
        .entries()
        .map(|(p, k, l)| (p.to_str().unwrap().to_owned(), k, l))
        .collect()
}

fn e(path: &str, kind: EntryKind, layer: usize) -> (String, EntryKind, usize) {
    (path.to_owned(), kind, layer)
}

#[test]
fn empty_stack_is_empty() {
    let s = Stack::new();
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    assert_eq!(s.entries().count(), 0);
}

#[test]
fn single_layer_provides_its_entries_and_implied_parents() {
    let s = stack(&[&[f("a/b/c"), d("a"), f("x")]]);
    assert_eq!(s.len(), 1);
    assert_eq!(
        view(&s),
        [
            e("a", Dir, 0),
            e("a/b", Dir, 0),
            e("a/b/c", NonDir, 0),
            e("x", NonDir, 0)
        ]
    );
}

#[test]
fn whiteout_removes_a_lower_file() {
    let s = stack(&[&[f("a"), f("b")], &[f(".wh.a")]]);
    assert_eq!(view(&s), [e("b", NonDir, 0)]);
}

#[test]
fn whiteout_removes_a_lower_directory_with_its_subtree() {
    let s = stack(&[&[f("a/b/c"), f("a/d"), f("a-b"), f("ab")], &[f(".wh.a")]]);
    assert_eq!(view(&s), [e("a-b", NonDir, 0), e("ab", NonDir, 0)]);
}

#[test]
fn whiteout_hides_every_lower_layer() {
    let s = stack(&[&[f("a/x")], &[f("a/y")], &[f("a/.wh.x"), f("a/.wh.y")]]);
    assert_eq!(view(&s), [e("a", Dir, 0)]);
}

#[test]
fn whiteout_of_a_missing_name_is_a_no_op() {
    let s = stack(&[
        &[f("a/x")],
        &[f("a/.wh.nothing"), f(".wh.nowhere"), f("x/.wh.y")],
    ]);
    assert_eq!(
        view(&s),
        [e("a", Dir, 0), e("a/x", NonDir, 0), e("x", Dir, 1)]
    );
}

#[test]
fn whiteout_never_hides_a_file_of_its_own_layer() {
    let s = stack(&[&[f("foo")], &[f(".wh.foo"), f("foo")]]);
    assert_eq!(view(&s), [e("foo", NonDir, 1)]);
    let s = stack(&[&[], &[f("foo"), f(".wh.foo")]]);
    assert_eq!(view(&s), [e("foo", NonDir, 1)]);
}

#[test]
fn whiteout_with_a_directory_of_its_own_layer_starts_that_directory_afresh() {
    let s = stack(&[
        &[d("foo"), f("foo/old")],
        &[d("foo"), f("foo/new"), f(".wh.foo")],
    ]);
    assert_eq!(view(&s), [e("foo", Dir, 1), e("foo/new", NonDir, 1)]);
}

#[test]
fn whiteout_of_a_lower_dir_then_implied_dir_is_provided_by_the_upper_layer() {
    let s = stack(&[&[d("foo"), f("foo/old")], &[f(".wh.foo"), f("foo/new")]]);
    assert_eq!(view(&s), [e("foo", Dir, 1), e("foo/new", NonDir, 1)]);
}

#[test]
fn opaque_removes_lower_children_but_keeps_the_directory() {
    let s = stack(&[
        &[d("a"), f("a/x"), d("a/y"), f("a/y/z"), f("b")],
        &[f("a/.wh..wh..opq")],
    ]);
    assert_eq!(view(&s), [e("a", Dir, 0), e("b", NonDir, 0)]);
}

#[test]
fn opaque_keeps_children_of_its_own_layer() {
    let s = stack(&[
        &[f("a/x"), f("a/y")],
        &[d("a"), f("a/y"), f("a/.wh..wh..opq"), f("a/z")],
    ]);
    assert_eq!(
        view(&s),
        [e("a", Dir, 1), e("a/y", NonDir, 1), e("a/z", NonDir, 1)]
    );
}

#[test]
fn opaque_over_a_lower_non_directory_replaces_it() {
    let s = stack(&[&[f("a")], &[f("a/.wh..wh..opq")]]);
    assert_eq!(view(&s), [e("a", Dir, 1)]);
}

#[test]
fn opaque_of_a_missing_directory_creates_it() {
    let s = stack(&[&[f("b")], &[f("a/.wh..wh..opq")]]);
    assert_eq!(view(&s), [e("a", Dir, 1), e("b", NonDir, 0)]);
}

#[test]
fn opaque_root_hides_everything_below() {
    let s = stack(&[&[f("a/b"), f("c")], &[f(".wh..wh..opq"), f("d")]]);
    assert_eq!(view(&s), [e("d", NonDir, 1)]);
}

#[test]
fn later_layer_recreates_what_an_earlier_one_removed() {
    let s = stack(&[
        &[f("a/x")],
        &[f(".wh.a")],
        &[f("a/y")],
        &[f("a/.wh.y")],
        &[d("a/y")],
    ]);
    assert_eq!(view(&s), [e("a", Dir, 2), e("a/y", Dir, 4)]);
}

#[test]
fn markers_never_appear_in_the_result() {
    let s = stack(&[
        &[f("a/x")],
        &[
            f("a/.wh.x"),
            f("a/.wh..wh..opq"),
            f(".wh.q"),
            f(".wh..wh.plnk"),
        ],
    ]);
    assert!(s.entries().all(|(p, _, _)| !LayerPlan::is_marker(p)));
    assert_eq!(view(&s), [e("a", Dir, 0)]);
}

#[test]
fn non_directory_replacing_a_directory_removes_its_subtree() {
    let s = stack(&[&[f("a/b/c"), f("a/d"), f("a-e")], &[f("a")]]);
    assert_eq!(view(&s), [e("a", NonDir, 1), e("a-e", NonDir, 0)]);
}

#[test]
fn directory_replaces_a_non_directory() {
    let s = stack(&[&[f("a")], &[d("a")]]);
    assert_eq!(view(&s), [e("a", Dir, 1)]);
}

#[test]
fn directory_over_directory_merges_with_the_upper_provider() {
    let s = stack(&[&[d("a"), f("a/x"), d("a/s")], &[d("a"), f("a/y")]]);
    assert_eq!(
        view(&s),
        [
            e("a", Dir, 1),
            e("a/s", Dir, 0),
            e("a/x", NonDir, 0),
            e("a/y", NonDir, 1)
        ]
    );
}

#[test]
fn implied_parent_keeps_the_lower_provider() {
    let s = stack(&[&[d("a"), d("a/b")], &[f("a/b/c")], &[f("a/b/d")]]);
    assert_eq!(
        view(&s),
        [
            e("a", Dir, 0),
            e("a/b", Dir, 0),
            e("a/b/c", NonDir, 1),
            e("a/b/d", NonDir, 2)
        ]
    );
}

#[test]
fn implied_parent_of_an_opaque_marker_keeps_the_lower_provider() {
    let s = stack(&[&[d("a"), f("a/x")], &[f("a/.wh..wh..opq")]]);
    assert_eq!(s.get(Path::new("a")), Some((Dir, 0)));
}

#[test]
fn implied_parent_replaces_a_lower_non_directory() {
    let s = stack(&[&[f("a")], &[f("a/b")]]);
    assert_eq!(view(&s), [e("a", Dir, 1), e("a/b", NonDir, 1)]);
}

#[test]
fn implied_parent_of_a_whiteout_replaces_a_lower_non_directory() {
    let s = stack(&[&[f("a")], &[f("a/.wh.b")]]);
    assert_eq!(view(&s), [e("a", Dir, 1)]);
}

#[test]
fn same_path_twice_takes_the_last_entry() {
    let s = stack(&[&[d("a"), f("a")]]);
    assert_eq!(view(&s), [e("a", NonDir, 0)]);
    let s = stack(&[&[f("a/x")], &[f("a"), d("a"), f("a/y")]]);
    assert_eq!(
        view(&s),
        [e("a", Dir, 1), e("a/x", NonDir, 0), e("a/y", NonDir, 1)]
    );
}

#[test]
fn entry_order_within_a_layer_does_not_matter() {
    let lower: &[LayerEntry] = &[f("a/x"), f("a/y/z"), f("b")];
    let upper = [
        f("a/y/w"),
        f("a/.wh.x"),
        d("a/y"),
        f("a/y/.wh..wh..opq"),
        f(".wh.b"),
        f("c/d"),
    ];
    let mut reversed = upper.clone();
    reversed.reverse();
    assert_eq!(
        view(&stack(&[lower, &upper])),
        view(&stack(&[lower, &reversed]))
    );
}

#[test]
fn entries_list_parents_before_children_in_component_order() {
    let s = stack(&[&[f("a-b"), f("a/b"), f("a.b"), f("a/b-c/d"), f("a0")]]);
    let order: Vec<String> = view(&s).into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(order, ["a", "a/b", "a/b-c", "a/b-c/d", "a-b", "a.b", "a0"]);
}

#[test]
fn invalid_layer_leaves_the_stack_unchanged() {
    let mut s = stack(&[&[f("a/x")]]);
    let before = view(&s);
    let err = s.push(&[f(".wh.a"), f("b/.wh.")]).unwrap_err();
    assert!(matches!(err, Error::InvalidMarker { .. }));
    assert_eq!(s.len(), 1);
    assert_eq!(view(&s), before);
}

#[test]
fn apply_takes_a_prepared_plan() {
    let mut s = stack(&[&[f("a/x"), f("b")]]);
    s.apply(LayerPlan::new(&[f("a/.wh.x")]).unwrap()).unwrap();
    assert_eq!(view(&s), [e("a", Dir, 0), e("b", NonDir, 0)]);
    assert_eq!(s.len(), 2);
}

#[test]
fn large_subtrees_are_removed_and_their_neighbours_kept() {
    let big: Vec<LayerEntry> = (0..20_000)
        .map(|i| f(&format!("usr/share/{}/{i}", i % 97)))
        .collect();
    let mut s = Stack::new();
    s.push(&big).unwrap();
    s.push(&[
        f("usr-local"),
        f("usr/share/5/.wh..wh..opq"),
        f("usr/share/.wh.7"),
    ])
    .unwrap();
    let total = 1 + 1 + 97 + 20_000 + 1;
    let (five, seven) = (20_000 / 97 + 1, 20_000 / 97 + 1);
    assert_eq!(s.entry_count(), total - five - seven - 1);
    assert_eq!(s.get(Path::new("usr/share/5")), Some((Dir, 0)));
    assert_eq!(s.get(Path::new("usr/share/7")), None);
    assert_eq!(s.get(Path::new("usr//share/5/")), Some((Dir, 0)));
    assert_eq!(s.get(Path::new("/usr")), None);
    s.push(&[f(".wh.usr")]).unwrap();
    assert_eq!(view(&s), [e("usr-local", NonDir, 1)]);
}
