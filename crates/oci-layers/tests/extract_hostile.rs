//! Hostile layers: nothing may be created or written outside the destination directory.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod extract_support;

use std::fs;

use extract_support::{Sandbox, Spec, dir, file, hardlink, symlink, tar};
use oci_layers::extract::{ExtractOptions, MAX_PATH_LEN, extract_layer};
use oci_layers::{Compression, Error};

/// Extracts `specs`, expecting an entry error for `entry` whose text contains `why`.
fn rejected(specs: &[Spec], entry: &str, why: &str) {
    let sb = Sandbox::new();
    let err = extract_layer(
        &tar(specs)[..],
        Compression::None,
        &sb.dest,
        &ExtractOptions::default(),
    )
    .expect_err("hostile layer accepted");
    let text = err.to_string();
    match &err {
        Error::Entry { entry: named, .. } => assert_eq!(named, entry, "{text}"),
        other => panic!("expected an entry error, got {other:?}"),
    }
    assert!(text.contains(why), "{text:?} does not say {why:?}");
    sb.assert_untouched();
}

/// Extracts `specs`, expecting success; returns the sandbox for further checks.
fn accepted(specs: &[Spec]) -> Sandbox {
    let sb = Sandbox::new();
    extract_layer(
        &tar(specs)[..],
        Compression::None,
        &sb.dest,
        &ExtractOptions::default(),
    )
    .unwrap();
    sb.assert_untouched();
    sb
}

#[test]
fn dot_dot_names_are_rejected() {
    rejected(&[file("../x", "x")], "../x", "escapes the layer directory");
    rejected(&[file("a/../../x", "x")], "a/../../x", "escapes");
    rejected(&[dir("ok"), file("ok/..", "x")], "ok/..", "escapes");
    rejected(&[symlink("../s", "/")], "../s", "escapes");
}

#[test]
fn absolute_names_are_taken_inside() {
    let sb = accepted(&[file("/etc/x", "inside"), file("//abs//y", "y")]);
    assert_eq!(fs::read(sb.path("etc/x")).unwrap(), b"inside");
    assert_eq!(fs::read(sb.path("abs/y")).unwrap(), b"y");
}

#[test]
fn writes_through_an_absolute_symlink_are_rejected() {
    let sb = Sandbox::new();
    let target = sb.sentinel.to_str().unwrap().to_string();
    drop(sb);
    rejected(
        &[symlink("a", &target), file("a/file", "pwned")],
        "a/file",
        "symlink",
    );
    rejected(&[symlink("a", &target), dir("a/sub")], "a/sub", "symlink");
    rejected(
        &[symlink("a", "/tmp"), symlink("a/evil", "/")],
        "a/evil",
        "symlink",
    );
}

#[test]
fn writes_through_a_relative_symlink_are_rejected() {
    rejected(
        &[symlink("a", ".."), file("a/x", "pwned")],
        "a/x",
        "symlink",
    );
    rejected(&[symlink("a", "."), file("a/x", "x")], "a/x", "symlink");
    rejected(
        &[
            dir("d"),
            symlink("d/up", "../.."),
            file("d/up/sentinel/victim", "pwned"),
        ],
        "d/up/sentinel/victim",
        "symlink",
    );
}

#[test]
fn hard_links_to_outside_are_rejected() {
    rejected(&[hardlink("h", "../outside")], "h", "escapes");
    rejected(&[hardlink("h", "../sentinel/victim")], "h", "escapes");
    rejected(&[hardlink("h", "missing")], "h", "does not exist");
    rejected(&[dir("d"), hardlink("h", "d")], "h", "directory");
    rejected(&[hardlink("h", "./")], "h", "root");
}

#[test]
fn hard_links_through_symlinked_parents_are_rejected() {
    let sb = Sandbox::new();
    let sentinel = sb.sentinel.to_str().unwrap().to_string();
    drop(sb);
    // "s/victim" would resolve outside if the symlink s were followed.
    rejected(
        &[symlink("s", &sentinel), hardlink("h", "s/victim")],
        "h",
        "symlink",
    );
}

#[test]
fn hard_link_to_an_outside_symlink_is_only_a_symlink() {
    let sb = Sandbox::new();
    let victim = sb.sentinel.join("victim").to_str().unwrap().to_string();
    let sentinel = sb.sentinel.to_str().unwrap().to_string();
    drop(sb);
    // The link is to the symlink itself; writing a file at its name replaces it.
    let sb = accepted(&[
        symlink("s", &victim),
        hardlink("h", "s"),
        file("h", "pwned"),
    ]);
    assert_eq!(fs::read(sb.path("h")).unwrap(), b"pwned");
    assert!(fs::symlink_metadata(sb.path("s")).unwrap().is_symlink());
    // And nothing can be written beneath it.
    rejected(
        &[
            symlink("s", &sentinel),
            hardlink("h", "s"),
            file("h/x", "pwned"),
        ],
        "h/x",
        "symlink",
    );
}

#[test]
fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
    let sb = Sandbox::new();
    let victim = sb.sentinel.join("victim").to_str().unwrap().to_string();
    drop(sb);
    let sb = accepted(&[symlink("f", &victim), file("f", "pwned")]);
    let meta = fs::symlink_metadata(sb.path("f")).unwrap();
    assert!(meta.is_file());
    assert_eq!(fs::read(sb.path("f")).unwrap(), b"pwned");
}

#[test]
fn a_directory_replaces_a_symlink() {
    let sb = Sandbox::new();
    let sentinel = sb.sentinel.to_str().unwrap().to_string();
    drop(sb);
    let sb = accepted(&[symlink("d", &sentinel), dir("d"), file("d/x", "inside")]);
    assert!(fs::symlink_metadata(sb.path("d")).unwrap().is_dir());
    assert_eq!(fs::read(sb.path("d/x")).unwrap(), b"inside");
}

#[test]
fn oversized_names_and_metadata_are_rejected() {
    let long = "a/".repeat(MAX_PATH_LEN / 2 + 1);
    let spec = Spec {
        pax: vec![("path".into(), long.clone().into_bytes())],
        ..file("short", "x")
    };
    rejected(&[spec], &format!("{}…", &long[..300]), "path limit");
    let huge_pax = Spec {
        pax: vec![("comment".into(), vec![b'x'; 3 << 20])],
        ..file("f", "x")
    };
    let sb = Sandbox::new();
    let err = extract_layer(
        &tar(&[huge_pax])[..],
        Compression::None,
        &sb.dest,
        &ExtractOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("PAX records"), "{err}");
    sb.assert_untouched();
    let xattrs = Spec {
        pax: (0..200)
            .map(|i| (format!("SCHILY.xattr.user.{i}"), b"v".to_vec()))
            .collect(),
        ..file("many", "x")
    };
    rejected(&[xattrs], "many", "extended attributes");
}

#[test]
fn non_directory_root_and_empty_symlinks_are_rejected() {
    rejected(&[file("./", "x")], "./", "layer root");
    rejected(&[symlink("s", "")], "s", "empty");
}
