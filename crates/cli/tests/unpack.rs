//! `boxlite image unpack`: assembling a rootfs, idempotence, and refusing foreign directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use common::{Env, assert_demo_rootfs, demo_layout, tree};

#[test]
fn unpacks_into_a_new_directory_with_whiteouts_applied() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);

    let dest = env.path("rootfs");
    let shown = dest.to_str().unwrap();
    let run = env.run(&["image", "unpack", "demo:1", shown]);
    let out = run.ok();
    assert!(
        out.starts_with(&format!("{shown}: 2 layers (2 extracted), ")),
        "{out:?}"
    );
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert_eq!(
        run.stderr, "",
        "a successful unpack should print nothing on stderr"
    );
    assert_demo_rootfs(&dest);

    // The same destination again: recognised as done, left alone.
    let again = env.run(&["image", "unpack", "demo:1", shown]);
    assert_eq!(again.ok(), format!("{shown}: already complete\n"));
    assert_demo_rootfs(&dest);

    // Another destination reuses the layers extracted the first time.
    let second = env.path("rootfs2");
    let run = env.run(&["image", "unpack", "demo:1", second.to_str().unwrap()]);
    assert!(
        run.ok().contains(": 2 layers (0 extracted), "),
        "{}",
        run.stdout
    );
    assert_demo_rootfs(&second);
}

#[test]
fn unpacks_into_an_existing_empty_directory() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    let dest = env.path("empty");
    fs::create_dir(&dest).unwrap();
    env.run(&["image", "unpack", "demo:1", dest.to_str().unwrap()])
        .ok();
    assert_demo_rootfs(&dest);
}

#[test]
fn refuses_a_non_empty_foreign_directory_and_leaves_it_untouched() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    let dest = env.path("mine");
    common::write_files(
        &dest,
        &[("notes.txt", "keep me\n"), ("sub/data", "mine too\n")],
    );
    let before = tree(&dest);

    let run = env.run(&["image", "unpack", "demo:1", dest.to_str().unwrap()]);
    run.fails_with(&[
        dest.to_str().unwrap(),
        "not empty",
        "choose another destination",
    ]);
    assert_eq!(tree(&dest), before);
    assert_eq!(
        fs::read_to_string(dest.join("notes.txt")).unwrap(),
        "keep me\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("sub/data")).unwrap(),
        "mine too\n"
    );
}

#[test]
fn refuses_a_destination_that_is_a_file() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    let dest = env.path("file");
    fs::write(&dest, "not a directory\n").unwrap();
    env.run(&["image", "unpack", "demo:1", dest.to_str().unwrap()])
        .fails_with(&[dest.to_str().unwrap(), "not a directory"]);
    assert_eq!(fs::read_to_string(&dest).unwrap(), "not a directory\n");
}

#[test]
fn refuses_a_rootfs_of_another_image() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    let other = env.path("other");
    oci_layers::LayoutBuilder::new()
        .layer_dir(
            common::other_layer(&env.path("other-src")),
            oci_layers::Compression::Gzip,
        )
        .write_layout(&other, "other:1")
        .unwrap();
    env.import(&other, None);

    let dest = env.path("rootfs");
    let shown = dest.to_str().unwrap();
    let out = env
        .run(&["image", "unpack", "other:1", shown])
        .ok()
        .to_string();
    assert!(
        out.starts_with(&format!("{shown}: 1 layer (1 extracted), 1 file, ")),
        "{out:?}"
    );
    let before = tree(&dest);
    env.run(&["image", "unpack", "demo:1", shown])
        .fails_with(&[shown, "another image"]);
    assert_eq!(tree(&dest), before);
}
