//! `boxlite image import / ls / inspect / rm` against a temporary home.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Env, demo_archive, demo_layout, ls_json};
use oci_layers::builder::DockerArchiveFormat;

/// The one line `import` prints: the image's name and manifest digest.
#[track_caller]
fn assert_import_line(out: &str, name: &str) -> String {
    let line = out
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("import printed {out:?}"));
    let (shown, digest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("import printed {out:?}"));
    assert_eq!(shown, name, "import printed {out:?}");
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("import printed {out:?}"));
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "import printed {out:?}"
    );
    digest.to_string()
}

#[test]
fn imports_an_oci_layout_directory_idempotently() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "demo:1");
    let out = env.import(&layout, None);
    assert_eq!(out, format!("demo:1 {}\n", built.manifest.digest));
    let blobs = env.blobs();
    // Manifest, config and two layers.
    assert_eq!(blobs.len(), 4, "{blobs:?}");

    let again = env.import(&layout, None);
    assert_eq!(again, out, "re-import must report the same image");
    assert_eq!(env.blobs(), blobs, "re-import must not change the store");
    assert_eq!(env.names(), ["demo:1"]);
}

#[test]
fn imports_both_docker_archive_formats() {
    for (format, tag) in [
        (DockerArchiveFormat::Legacy, "legacy:1"),
        (DockerArchiveFormat::OciLayout, "ocidocker:1"),
    ] {
        let env = Env::new();
        let (archive, built) = demo_archive(&env, "image.tar", tag, format);
        let out = env.import(&archive, None);
        let digest = assert_import_line(&out, tag);
        if format == DockerArchiveFormat::OciLayout {
            assert_eq!(digest, built.manifest.digest.to_string());
        }
        assert_eq!(env.names(), [tag]);
        let inspect: serde_json::Value =
            serde_json::from_str(env.run(&["image", "inspect", tag]).ok()).unwrap();
        assert_eq!(
            inspect["record"]["config_digest"],
            built.config.digest.to_string(),
            "{format:?}"
        );
        assert_eq!(env.import(&archive, None), out, "{format:?} re-import");
        assert_eq!(env.names(), [tag]);
    }
}

#[test]
fn imports_an_oci_layout_packed_in_a_tar() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "packed:1");
    let tarball = env.path("layout.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = env.import(&tarball, None);
    assert_eq!(out, format!("packed:1 {}\n", built.manifest.digest));
    assert_eq!(env.names(), ["packed:1"]);
}

#[test]
fn name_flag_overrides_the_name_the_image_carries() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "carried:1");
    let out = env.import(&layout, Some("registry.example/team/app:v2"));
    assert_eq!(
        out,
        format!("registry.example/team/app:v2 {}\n", built.manifest.digest)
    );
    assert_eq!(env.names(), ["registry.example/team/app:v2"]);

    // An invalid name is refused before anything is stored.
    let env = Env::new();
    let run = env.run(&[
        "image",
        "import",
        layout.to_str().unwrap(),
        "--name",
        "bad name",
    ]);
    run.fails_with(&["invalid image name", "bad name"]);
    assert!(env.names().is_empty());
    assert!(env.blobs().is_empty());
}

#[test]
fn ls_prints_a_table_and_json() {
    let env = Env::new();
    let empty = env.run(&["image", "ls"]);
    let header = empty.ok();
    assert!(header.starts_with("NAME "), "{header:?}");
    assert_eq!(header.lines().count(), 1, "{header:?}");
    assert_eq!(
        ls_json(&env.run(&["image", "ls", "--json"])),
        serde_json::json!([])
    );

    let (layout, built) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    env.import(&layout, Some("alias"));

    let table = env.run(&["image", "ls"]).ok().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "ID", "LAYERS", "SIZE"]);
    let short_id = &built.config.digest.hex()[..12];
    // Sorted by name; both names are the same image.
    for (line, name) in lines[1..].iter().zip(["alias", "demo:1"]) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[..3], [name, short_id, "2"], "{line:?}");
        assert!(cols[4].ends_with('B'), "size column of {line:?}");
    }

    // `list` is an alias of `ls`.
    assert_eq!(env.run(&["image", "list"]).ok(), table);

    let json = ls_json(&env.run(&["image", "ls", "--json"]));
    let records = json.as_array().unwrap();
    assert_eq!(records.len(), 2);
    for (record, name) in records.iter().zip(["alias", "demo:1"]) {
        assert_eq!(record["name"], name);
        assert_eq!(record["manifest_digest"], built.manifest.digest.to_string());
        assert_eq!(record["config_digest"], built.config.digest.to_string());
        let layers = record["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        for (layer, b) in layers.iter().zip(&built.layers) {
            assert_eq!(layer["digest"], b.descriptor.digest.to_string());
            assert_eq!(layer["diff_id"], b.diff_id.to_string());
            assert_eq!(layer["size"], b.descriptor.size);
        }
        let total = built.manifest.size
            + built.config.size
            + built.layers.iter().map(|l| l.descriptor.size).sum::<u64>();
        assert_eq!(record["size"], total);
    }
}

#[test]
fn inspect_prints_record_manifest_and_config() {
    let env = Env::new();
    let (layout, built) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    let out = env.run(&["image", "inspect", "demo:1"]).ok().to_string();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["record"]["name"], "demo:1");
    assert_eq!(
        json["record"]["manifest_digest"],
        built.manifest.digest.to_string()
    );
    assert_eq!(json["manifest"]["schemaVersion"], 2);
    assert_eq!(
        json["manifest"]["config"]["digest"],
        built.config.digest.to_string()
    );
    assert_eq!(json["manifest"]["layers"].as_array().unwrap().len(), 2);
    let diff_ids: Vec<String> = built.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(
        json["config"]["rootfs"]["diff_ids"],
        serde_json::json!(diff_ids)
    );
    assert_eq!(
        json["config"]["config"]["Cmd"],
        serde_json::json!(["/bin/hello"])
    );

    // By digest prefix (manifest or config) and without the `:latest` tag, too.
    for reference in [
        &built.manifest.digest.hex()[..12],
        &built.config.digest.to_string()[..20],
    ] {
        let by_digest = env.run(&["image", "inspect", reference]);
        assert_eq!(by_digest.ok(), out, "inspect {reference}");
    }
}

#[test]
fn unknown_images_are_named_with_a_hint() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    for args in [
        &["image", "inspect", "nope:1"][..],
        &["image", "rm", "nope:1"],
        &[
            "image",
            "unpack",
            "nope:1",
            env.path("dest").to_str().unwrap(),
        ],
    ] {
        env.run(args).fails_with(&["nope:1", "`boxlite image ls`"]);
    }
    assert!(
        !env.path("dest").exists(),
        "a failed unpack created its destination"
    );
    assert_eq!(env.names(), ["demo:1"]);
}

#[test]
fn rm_removes_the_image_and_only_its_unshared_blobs() {
    let env = Env::new();
    let (layout_a, a) = demo_layout(&env, "a", "a:1");
    let layout_b = env.path("b");
    let b = oci_layers::LayoutBuilder::new()
        .layer_dir(
            common::base_layer(&env.path("b-src")),
            oci_layers::Compression::Gzip,
        )
        .layer_dir(
            common::other_layer(&env.path("b-src")),
            oci_layers::Compression::Gzip,
        )
        .write_layout(&layout_b, "b:1")
        .unwrap();
    assert_eq!(
        a.layers[0], b.layers[0],
        "the images must share their base layer"
    );
    env.import(&layout_a, None);
    env.import(&layout_b, None);
    let both = env.blobs();
    let bytes_both = env.blob_bytes();
    assert_eq!(
        both.len(),
        7,
        "2 manifests, 2 configs, 3 distinct layers: {both:?}"
    );

    let out = env.run(&["image", "rm", "a:1"]).ok().to_string();
    assert!(out.starts_with("removed a:1 (3 blobs, "), "{out:?}");
    assert_eq!(env.names(), ["b:1"]);
    let left = env.blobs();
    let blob = |d: &oci_layers::Digest| format!("sha256/{}", d.hex());
    let only_a = [
        &a.manifest.digest,
        &a.config.digest,
        &a.layers[1].descriptor.digest,
    ];
    for d in only_a {
        assert!(!left.contains(&blob(d)), "{d} of a:1 survived rm");
    }
    for d in [
        &b.manifest.digest,
        &b.config.digest,
        &b.layers[0].descriptor.digest,
    ] {
        assert!(left.contains(&blob(d)), "{d} of b:1 was removed with a:1");
    }
    assert_eq!(left.len(), 4);
    assert!(env.blob_bytes() < bytes_both);

    // The removed image is gone for every command; the other still works.
    env.run(&["image", "unpack", "a:1", env.path("ra").to_str().unwrap()])
        .fails_with(&["a:1", "`boxlite image ls`"]);
    env.run(&["image", "inspect", "a:1"]).fails_with(&["a:1"]);
    env.run(&["image", "unpack", "b:1", env.path("rb").to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(env.path("rb/srv/other")).unwrap(),
        "only in the other image\n"
    );

    env.run(&["image", "rm", "b:1"]).ok();
    assert!(env.names().is_empty());
    assert!(env.blobs().is_empty(), "{:?}", env.blobs());
}

#[test]
fn rm_of_one_name_keeps_blobs_another_name_needs() {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    env.import(&layout, Some("alias"));
    let blobs = env.blobs();
    let out = env.run(&["image", "rm", "demo:1"]).ok().to_string();
    assert_eq!(out, "removed demo:1 (0 blobs, 0 B freed)\n");
    assert_eq!(env.blobs(), blobs);
    assert_eq!(env.names(), ["alias"]);
    env.run(&["image", "rm", "alias"]).ok();
    assert!(env.blobs().is_empty());
}
