use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Command;

use super::*;

/// A small tree with every kind of entry an unprivileged user can make.
fn sample_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("etc/deep")).unwrap();
    fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    fs::write(root.join("etc/deep/.wh.gone"), b"").unwrap();
    fs::set_permissions(root.join("etc/hosts"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::hard_link(root.join("etc/hosts"), root.join("hosts-link")).unwrap();
    symlink("etc/hosts", root.join("sym")).unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(root.join(&long).join("f".repeat(120)), b"long").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // user.* xattrs need a filesystem that supports them (tmpfs since 6.6, ext4, xfs).
    let _ = rustix::fs::lsetxattr(
        root.join("etc/hosts"),
        "user.test",
        b"value\0with nul",
        rustix::fs::XattrFlags::empty(),
    );
    dir
}

struct Seen {
    kind: tar::EntryType,
    mode: u32,
    link: Option<String>,
    data: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn entries(tar_bytes: &[u8]) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let mut xattrs = BTreeMap::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let seen = Seen {
            kind: e.header().entry_type(),
            mode: e.header().mode().unwrap(),
            link: e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned()),
            data,
            xattrs,
        };
        out.insert(path, seen);
    }
    out
}

#[test]
fn tree_tar_keeps_metadata_and_links() {
    let tree = sample_tree();
    let bytes = write_tree(tree.path(), Vec::new()).unwrap();
    let e = entries(&bytes);
    assert_eq!(e["etc"].kind, tar::EntryType::Directory);
    assert_eq!(e["etc/hosts"].kind, tar::EntryType::Regular);
    assert_eq!(e["etc/hosts"].mode, 0o640);
    assert_eq!(e["etc/hosts"].data, b"127.0.0.1 localhost\n");
    assert_eq!(e["etc/deep/.wh.gone"].kind, tar::EntryType::Regular);
    // "etc/hosts" sorts before "hosts-link", so the first gets the data.
    assert_eq!(e["hosts-link"].kind, tar::EntryType::Link);
    assert_eq!(e["hosts-link"].link.as_deref(), Some("etc/hosts"));
    assert_eq!(e["sym"].kind, tar::EntryType::Symlink);
    assert_eq!(e["sym"].link.as_deref(), Some("etc/hosts"));
    assert_eq!(e["fifo"].kind, tar::EntryType::Fifo);
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    assert_eq!(e[&long].data, b"long");
    let has_xattr = rustix::fs::lgetxattr_query(tree.path().join("etc/hosts"), "user.test").is_ok();
    if has_xattr {
        assert_eq!(e["etc/hosts"].xattrs["user.test"], b"value\0with nul");
    } else {
        eprintln!("skipping xattr check: this filesystem has no user xattrs");
    }
    // Owners and mtimes come from the files.
    let meta = fs::metadata(tree.path().join("etc/hosts")).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("etc/hosts") {
            assert_eq!(entry.header().uid().unwrap(), u64::from(meta.uid()));
            assert_eq!(entry.header().mtime().unwrap(), meta.mtime() as u64);
        }
    }
}

#[test]
fn gnu_tar_reads_the_tree_tar_with_xattrs() {
    let tree = sample_tree();
    let bytes = write_tree(tree.path(), Vec::new()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let tar_path = out.path().join("layer.tar");
    fs::write(&tar_path, &bytes).unwrap();
    let listing = Command::new("tar")
        .arg("-tvf")
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("hosts-link link to etc/hosts"),
        "{listing}"
    );
    assert!(listing.contains("sym -> etc/hosts"), "{listing}");
    let dest = out.path().join("x");
    fs::create_dir(&dest).unwrap();
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=user.*", "-xf"])
        .arg(&tar_path)
        .arg("-C")
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read(dest.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let a = fs::metadata(dest.join("etc/hosts")).unwrap();
    let b = fs::metadata(dest.join("hosts-link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    if rustix::fs::lgetxattr_query(tree.path().join("etc/hosts"), "user.test").is_ok() {
        let mut buf = [0u8; 64];
        let n = rustix::fs::lgetxattr(dest.join("etc/hosts"), "user.test", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"value\0with nul");
    }
}

#[test]
fn device_nodes_are_tarred_as_devices() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: making a device node needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let bytes = write_tree(dir.path(), Vec::new()).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.header().entry_type(), tar::EntryType::Char);
    assert_eq!(entry.header().device_major().unwrap(), Some(1));
    assert_eq!(entry.header().device_minor().unwrap(), Some(3));
}

#[test]
fn builds_are_reproducible_and_digests_are_right() {
    let tree = sample_tree();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let builder = LayoutBuilder::new()
        .layer_dir(tree.path(), Compression::Gzip)
        .layer_dir(tree.path(), Compression::Zstd)
        .layer_dir(tree.path(), Compression::None)
        .cmd(["/bin/sh"]);
    let x = builder.write_layout(a.path(), "t").unwrap();
    let y = builder.write_layout(b.path(), "t").unwrap();
    assert_eq!(x, y);
    // All three layers have the same uncompressed content, so the same diff_id.
    assert_eq!(x.layers[0].diff_id, x.layers[1].diff_id);
    assert_eq!(x.layers[2].descriptor.digest, x.layers[2].diff_id);
    for l in &x.layers {
        let path = a
            .path()
            .join("blobs/sha256")
            .join(l.descriptor.digest.hex());
        let bytes = fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, l.descriptor.size);
        assert_eq!(Digest::of(Algorithm::Sha256, &bytes), l.descriptor.digest);
    }
    let tar = write_tree(tree.path(), Vec::new()).unwrap();
    assert_eq!(Digest::of(Algorithm::Sha256, &tar), x.layers[0].diff_id);
}

#[test]
fn layout_index_keeps_other_refs_and_replaces_same_ref() {
    let dir = tempfile::tempdir().unwrap();
    let one = LayoutBuilder::new()
        .cmd(["one"])
        .write_layout(dir.path(), "one")
        .unwrap();
    LayoutBuilder::new()
        .cmd(["two"])
        .write_layout(dir.path(), "two")
        .unwrap();
    let again = LayoutBuilder::new()
        .cmd(["uno"])
        .write_layout(dir.path(), "one")
        .unwrap();
    assert_ne!(one.manifest.digest, again.manifest.digest);
    let index = parse_index(&fs::read(dir.path().join("index.json")).unwrap(), "i").unwrap();
    let refs: Vec<&str> = index
        .manifests
        .iter()
        .filter_map(|d| d.annotation(ANNOTATION_REF_NAME))
        .collect();
    assert_eq!(refs, ["two", "one"]);
}

#[test]
fn umoci_accepts_the_layout() {
    if Command::new("umoci").arg("--version").output().is_err() {
        eprintln!("skipping: umoci is not installed");
        return;
    }
    let tree = sample_tree();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    LayoutBuilder::new()
        .layer_dir(tree.path(), Compression::Gzip)
        .layer_tar(
            write_tree(tree.path(), Vec::new()).unwrap(),
            Compression::None,
        )
        .env(["PATH=/usr/bin:/bin"])
        .cmd(["/bin/sh", "-c", "true"])
        .working_dir("/etc")
        .user("1000:1000")
        .write_layout(&layout, "latest")
        .unwrap();
    let image = format!("{}:latest", layout.display());
    let stat = Command::new("umoci")
        .args(["stat", "--json", "--image", &image])
        .output()
        .unwrap();
    assert!(
        stat.status.success(),
        "umoci stat: {}",
        String::from_utf8_lossy(&stat.stderr)
    );
    let bundle = dir.path().join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs::read(rootfs.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(
        fs::read_link(rootfs.join("sym")).unwrap(),
        Path::new("etc/hosts")
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["cwd"], "/etc");
    assert_eq!(config["process"]["args"][2], "true");
}
