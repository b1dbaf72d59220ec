use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::*;
use EntryKind::{Dir, NonDir};

fn plan(entries: &[LayerEntry]) -> Result<LayerPlan, Error> {
    LayerPlan::new(entries)
}

fn paths(list: &[PathBuf]) -> Vec<&str> {
    list.iter().map(|p| p.to_str().unwrap()).collect()
}

fn tree(plan: &LayerPlan) -> Vec<(String, Declared)> {
    plan.entries()
        .map(|(p, d)| (p.to_str().unwrap().to_owned(), d))
        .collect()
}

#[test]
fn whiteout_removes_its_sibling_below() {
    let p = plan(&[LayerEntry::non_dir("a/.wh.b")]).unwrap();
    assert_eq!(paths(p.removals()), ["a/b"]);
    assert!(p.opaque_dirs().is_empty());
}

#[test]
fn opaque_marker_names_its_directory() {
    let p = plan(&[LayerEntry::non_dir("a/b/.wh..wh..opq")]).unwrap();
    assert_eq!(paths(p.opaque_dirs()), ["a/b"]);
    assert!(p.removals().is_empty());
}

#[test]
fn markers_at_the_root() {
    let p = plan(&[
        LayerEntry::non_dir(".wh.etc"),
        LayerEntry::non_dir(".wh..wh..opq"),
    ])
    .unwrap();
    assert_eq!(paths(p.removals()), ["etc"]);
    assert_eq!(paths(p.opaque_dirs()), [""]);
    assert!(p.entries().next().is_none());
}

#[test]
fn nested_removals_collapse_to_the_outermost() {
    let p = plan(&[
        LayerEntry::non_dir("a/b/.wh.c"),
        LayerEntry::non_dir(".wh.a"),
        LayerEntry::non_dir(".wh.a-b"),
        LayerEntry::non_dir("a/.wh.b"),
        LayerEntry::non_dir(".wh.a"),
    ])
    .unwrap();
    assert_eq!(paths(p.removals()), ["a", "a-b"]);
}

#[test]
fn marker_and_its_target_in_one_layer_both_stay() {
    let p = plan(&[LayerEntry::non_dir(".wh.foo"), LayerEntry::dir("foo")]).unwrap();
    assert_eq!(paths(p.removals()), ["foo"]);
    assert_eq!(tree(&p), [("foo".to_owned(), Declared::Explicit(Dir))]);
}

#[test]
fn unlisted_parents_are_implied() {
    let p = plan(&[LayerEntry::non_dir("a/b/c"), LayerEntry::dir("a")]).unwrap();
    assert_eq!(
        tree(&p),
        [
            ("a".to_owned(), Declared::Explicit(Dir)),
            ("a/b".to_owned(), Declared::Implied),
            ("a/b/c".to_owned(), Declared::Explicit(NonDir)),
        ]
    );
}

#[test]
fn markers_imply_their_parents() {
    let p = plan(&[
        LayerEntry::non_dir("x/y/.wh.z"),
        LayerEntry::non_dir("q/.wh..wh..opq"),
    ])
    .unwrap();
    assert_eq!(
        tree(&p),
        [
            ("q".to_owned(), Declared::Implied),
            ("x".to_owned(), Declared::Implied),
            ("x/y".to_owned(), Declared::Implied),
        ]
    );
}

#[test]
fn last_listing_of_a_path_wins() {
    let p = plan(&[
        LayerEntry::non_dir("a"),
        LayerEntry::dir("a"),
        LayerEntry::non_dir("a/b"),
    ])
    .unwrap();
    assert_eq!(tree(&p)[0], ("a".to_owned(), Declared::Explicit(Dir)));
    let err = plan(&[
        LayerEntry::dir("a"),
        LayerEntry::non_dir("a/b"),
        LayerEntry::non_dir("a"),
    ]);
    assert!(matches!(err, Err(Error::UnderNonDirectory { .. })));
}

#[test]
fn empty_whiteout_is_invalid() {
    let err = plan(&[LayerEntry::non_dir("a/.wh.")]).unwrap_err();
    assert!(matches!(&err, Error::InvalidMarker { path, .. } if path == Path::new("a/.wh.")));
}

#[test]
fn whiteout_of_dot_or_dot_dot_is_invalid() {
    for name in ["a/.wh..", "a/.wh...", ".wh..", ".wh..."] {
        let err = plan(&[LayerEntry::non_dir(name)]).unwrap_err();
        assert!(matches!(err, Error::InvalidMarker { .. }), "{name}: {err}");
    }
}

#[test]
fn directory_markers_are_invalid() {
    for name in ["d/.wh..wh..opq", "d/.wh.x"] {
        let err = plan(&[LayerEntry::dir(name)]).unwrap_err();
        assert!(matches!(err, Error::InvalidMarker { .. }), "{name}: {err}");
    }
}

#[test]
fn entries_beneath_a_marker_are_invalid() {
    let err = plan(&[LayerEntry::non_dir("a/.wh.b/c")]).unwrap_err();
    assert_eq!(
        err,
        Error::UnderMarker {
            path: "a/.wh.b/c".into(),
            marker: "a/.wh.b".into()
        }
    );
    let err = plan(&[LayerEntry::non_dir(".wh..wh..opq/x/y")]).unwrap_err();
    assert!(
        matches!(err, Error::UnderMarker { marker, .. } if marker == Path::new(".wh..wh..opq"))
    );
}

#[test]
fn aufs_metadata_is_ignored_with_its_subtree() {
    let p = plan(&[
        LayerEntry::dir(".wh..wh.plnk"),
        LayerEntry::non_dir(".wh..wh.plnk/1234.5678"),
        LayerEntry::non_dir("etc/.wh..wh.aufs"),
    ])
    .unwrap();
    assert!(p.removals().is_empty());
    // Not even their parents are implied: Docker skips such entries outright.
    assert!(tree(&p).is_empty());
}

#[test]
fn marker_beneath_a_listed_non_directory_is_invalid() {
    let err = plan(&[LayerEntry::non_dir("f"), LayerEntry::non_dir("f/g/.wh.x")]).unwrap_err();
    assert_eq!(
        err,
        Error::UnderNonDirectory {
            path: "f/g/.wh.x".into(),
            parent: "f".into()
        }
    );
}

#[test]
fn entry_beneath_a_listed_non_directory_is_invalid() {
    let err = plan(&[
        LayerEntry::non_dir("a/f/g"),
        LayerEntry::dir("a"),
        LayerEntry::non_dir("a/f"),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        Error::UnderNonDirectory {
            path: "a/f/g".into(),
            parent: "a/f".into()
        }
    );
}

#[test]
fn non_normalised_paths_are_rejected_by_name() {
    let err = plan(&[
        LayerEntry::non_dir("ok"),
        LayerEntry::non_dir("/etc/passwd"),
    ])
    .unwrap_err();
    assert!(matches!(&err, Error::NotNormalised { path, .. } if path == Path::new("/etc/passwd")));
    assert!(err.to_string().contains("/etc/passwd"), "{err}");
}

#[test]
fn errors_name_the_entry() {
    let err = plan(&[LayerEntry::non_dir("usr/lib/.wh.")]).unwrap_err();
    assert!(err.to_string().contains("usr/lib/.wh."), "{err}");
}

#[test]
fn is_marker_covers_markers_and_what_lies_beneath_them() {
    assert!(LayerPlan::is_marker(Path::new(".wh.foo")));
    assert!(LayerPlan::is_marker(Path::new("a/.wh..wh..opq")));
    assert!(LayerPlan::is_marker(Path::new(".wh..wh.plnk/123")));
    assert!(!LayerPlan::is_marker(Path::new("a/b.wh.c")));
    assert!(!LayerPlan::is_marker(Path::new("a/wh.b")));
}

#[test]
fn non_utf8_names_plan_like_any_other() {
    let name = OsStr::from_bytes(b"d\xff/.wh.\xfe");
    let p = plan(&[LayerEntry::non_dir(name)]).unwrap();
    assert_eq!(
        p.removals(),
        [PathBuf::from(OsStr::from_bytes(b"d\xff/\xfe"))]
    );
}
