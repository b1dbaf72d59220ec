//! Shared helpers for the `boxlite` integration tests: running the real binary against a
//! temporary home, and building small test images with `oci_layers::LayoutBuilder`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use oci_layers::builder::{BuiltImage, DockerArchiveFormat};
use oci_layers::{Compression, LayoutBuilder};

/// A `boxlite` command with no home setting inherited from the environment of the test run.
pub fn boxlite() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxlite"));
    cmd.env_remove("BOXLITE_HOME")
        .env_remove("XDG_DATA_HOME")
        .stdin(Stdio::null());
    cmd
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The command line, for failure messages.
    pub args: String,
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to completion and captures its output.
    pub fn of(mut cmd: Command) -> Run {
        let args = format!("{cmd:?}");
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().unwrap();
        Run {
            args,
            success: status.success(),
            code: status.code(),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    /// Asserts success; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.success,
            "{} failed:\n{}{}",
            self.args, self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts a clean failure: status != 0, nothing on stdout, exactly one line on stderr
    /// starting `boxlite: error: `. Returns that line.
    #[track_caller]
    pub fn fails(&self) -> &str {
        assert!(
            !self.success,
            "{} succeeded but should have failed:\n{}{}",
            self.args, self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "{}: stdout of a failure", self.args);
        let line = self.stderr.strip_suffix('\n').unwrap_or_else(|| {
            panic!(
                "{}: stderr does not end a line: {:?}",
                self.args, self.stderr
            )
        });
        assert!(
            !line.contains('\n'),
            "{}: more than one line on stderr:\n{}",
            self.args,
            self.stderr
        );
        assert!(
            line.starts_with("boxlite: error: "),
            "{}: stderr is not an error line: {line:?}",
            self.args
        );
        line
    }

    /// Asserts a clean failure whose message contains every one of `needles`.
    #[track_caller]
    pub fn fails_with(&self, needles: &[&str]) -> &str {
        let line = self.fails();
        for needle in needles {
            assert!(line.contains(needle), "{:?} not in {line:?}", needle);
        }
        line
    }
}

/// A temporary directory holding a boxlite home (`home/`) and room for fixtures.
pub struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    /// A fresh, empty environment.
    pub fn new() -> Env {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// The boxlite home the tests pass with `--home`.
    pub fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    /// A path inside the environment (not inside the home).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Runs `boxlite --home <home> <args…>`.
    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = boxlite();
        cmd.arg("--home").arg(self.home()).args(args);
        Run::of(cmd)
    }

    /// `image import <path> [--name <name>]`, asserted to succeed; returns its stdout.
    pub fn import(&self, path: &Path, name: Option<&str>) -> String {
        let mut args = vec!["image", "import", path.to_str().unwrap()];
        if let Some(n) = name {
            args.extend(["--name", n]);
        }
        self.run(&args).ok().to_string()
    }

    /// The names `image ls --json` reports.
    pub fn names(&self) -> Vec<String> {
        let json = ls_json(&self.run(&["image", "ls", "--json"]));
        json.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// The blob files in the home's content store, by `<alg>/<hex>`.
    pub fn blobs(&self) -> BTreeSet<String> {
        blobs_in(&self.home())
    }

    /// Total bytes of the blob files in the home's content store.
    pub fn blob_bytes(&self) -> u64 {
        let root = self.home().join("images/blobs");
        self.blobs()
            .iter()
            .map(|b| fs::metadata(root.join(b)).unwrap().len())
            .sum()
    }
}

/// Parses the stdout of a successful `image ls --json`.
#[track_caller]
pub fn ls_json(run: &Run) -> serde_json::Value {
    let out = run.ok();
    serde_json::from_str(out).unwrap_or_else(|e| panic!("ls --json printed bad JSON ({e}):\n{out}"))
}

/// The blob files under `<home>/images/blobs`, by `<alg>/<hex>`.
pub fn blobs_in(home: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let root = home.join("images/blobs");
    let Ok(algs) = fs::read_dir(&root) else {
        return out;
    };
    for alg in algs {
        let alg = alg.unwrap();
        for blob in fs::read_dir(alg.path()).unwrap() {
            out.insert(format!(
                "{}/{}",
                alg.file_name().to_str().unwrap(),
                blob.unwrap().file_name().to_str().unwrap()
            ));
        }
    }
    out
}

/// Writes `files` (relative path, contents) under `root`, creating directories.
pub fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (rel, contents) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
    }
}

/// The base layer of the demo image: a few files, an executable and a symlink.
pub fn base_layer(dir: &Path) -> PathBuf {
    let root = dir.join("layer-base");
    write_files(
        &root,
        &[
            ("etc/os-release", "NAME=boxlite-test v1\n"),
            ("etc/removed", "whited out by the top layer\n"),
            ("bin/hello", "#!/bin/sh\necho hello\n"),
            ("dir/keep/x", "hidden by the opaque dir\n"),
            ("dir/gone", "hidden by the opaque dir\n"),
            ("usr/share/doc/readme", "base readme\n"),
        ],
    );
    fs::set_permissions(root.join("bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("hello", root.join("bin/greet")).unwrap();
    root
}

/// The top layer of the demo image: a changed file, a whiteout and an opaque directory, as
/// the plain files (`.wh.<name>`, `.wh..wh..opq`) that the OCI layer format uses for them.
pub fn top_layer(dir: &Path) -> PathBuf {
    let root = dir.join("layer-top");
    write_files(
        &root,
        &[
            ("etc/os-release", "NAME=boxlite-test v2\n"),
            ("etc/.wh.removed", ""),
            ("dir/.wh..wh..opq", ""),
            ("dir/new", "new in the top layer\n"),
        ],
    );
    root
}

/// Another top layer, for a second image that shares the base layer.
pub fn other_layer(dir: &Path) -> PathBuf {
    let root = dir.join("layer-other");
    write_files(&root, &[("srv/other", "only in the other image\n")]);
    root
}

/// The two-layer demo image (base, then top with whiteouts), gzip-compressed.
pub fn demo_builder(dir: &Path) -> LayoutBuilder {
    LayoutBuilder::new()
        .layer_dir(base_layer(dir), Compression::Gzip)
        .layer_dir(top_layer(dir), Compression::Gzip)
        .cmd(["/bin/hello"])
}

/// Writes the demo image as an OCI layout at `<env>/<name>` with reference name `ref_name`.
pub fn demo_layout(env: &Env, name: &str, ref_name: &str) -> (PathBuf, BuiltImage) {
    let layout = env.path(name);
    let built = demo_builder(&env.path(&format!("{name}-src")))
        .write_layout(&layout, ref_name)
        .unwrap();
    (layout, built)
}

/// Writes the demo image as a `docker save` archive at `<env>/<name>` tagged `tag`.
pub fn demo_archive(
    env: &Env,
    name: &str,
    tag: &str,
    format: DockerArchiveFormat,
) -> (PathBuf, BuiltImage) {
    let archive = env.path(name);
    let built = demo_builder(&env.path(&format!("{name}-src")))
        .write_docker_archive(&archive, tag, format)
        .unwrap();
    (archive, built)
}

/// Where a blob lives inside an OCI layout.
pub fn layout_blob(layout: &Path, digest: &oci_layers::Digest) -> PathBuf {
    layout
        .join("blobs")
        .join(digest.algorithm().name())
        .join(digest.hex())
}

/// Every path under `root`, relative, sorted.
pub fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.insert(
                path.strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// The rootfs the demo image assembles to: every path, after whiteouts and the opaque dir.
pub fn demo_rootfs_paths() -> BTreeSet<String> {
    [
        "bin",
        "bin/greet",
        "bin/hello",
        "dir",
        "dir/new",
        "etc",
        "etc/os-release",
        "usr",
        "usr/share",
        "usr/share/doc",
        "usr/share/doc/readme",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Asserts that `rootfs` is exactly the demo image's root filesystem.
#[track_caller]
pub fn assert_demo_rootfs(rootfs: &Path) {
    assert_eq!(
        tree(rootfs),
        demo_rootfs_paths(),
        "paths in {}",
        rootfs.display()
    );
    let read = |rel: &str| fs::read_to_string(rootfs.join(rel)).unwrap();
    assert_eq!(read("etc/os-release"), "NAME=boxlite-test v2\n");
    assert_eq!(read("bin/hello"), "#!/bin/sh\necho hello\n");
    assert_eq!(read("dir/new"), "new in the top layer\n");
    assert_eq!(read("usr/share/doc/readme"), "base readme\n");
    let mode = fs::metadata(rootfs.join("bin/hello"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "mode of bin/hello");
    assert_eq!(
        fs::read_link(rootfs.join("bin/greet")).unwrap(),
        Path::new("hello")
    );
}
