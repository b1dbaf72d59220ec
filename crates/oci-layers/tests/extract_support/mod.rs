//! Building tar layers byte by byte (hostile ones included) for the extraction tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// One tar entry to write; names and link targets are written raw (`..` allowed).
#[derive(Clone)]
pub struct Spec {
    pub name: Vec<u8>,
    pub ty: EntryType,
    pub data: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev: (u32, u32),
    pub pax: Vec<(String, Vec<u8>)>,
    /// Write the name in a GNU `L` entry instead of the header (for long names).
    pub gnu_long_name: bool,
}

impl Spec {
    pub fn new(name: impl AsRef<[u8]>, ty: EntryType) -> Spec {
        Spec {
            name: name.as_ref().to_vec(),
            ty,
            data: Vec::new(),
            link: None,
            mode: if ty == EntryType::Directory {
                0o755
            } else {
                0o644
            },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            dev: (0, 0),
            pax: Vec::new(),
            gnu_long_name: false,
        }
    }
}

pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Spec {
    Spec {
        data: data.as_ref().to_vec(),
        ..Spec::new(name, EntryType::Regular)
    }
}

pub fn dir(name: impl AsRef<[u8]>) -> Spec {
    Spec::new(name, EntryType::Directory)
}

pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Spec {
    Spec {
        link: Some(target.as_ref().to_vec()),
        mode: 0o777,
        ..Spec::new(name, EntryType::Symlink)
    }
}

pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Spec {
    Spec {
        link: Some(target.as_ref().to_vec()),
        ..Spec::new(name, EntryType::Link)
    }
}

/// A PAX record `LEN KEY=VALUE\n`.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn header(name: &[u8], ty: EntryType, size: u64) -> Header {
    let mut h = Header::new_ustar();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.set_entry_type(ty);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h
}

fn push_block(out: &mut Vec<u8>, mut h: Header, data: &[u8]) {
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// The bytes of one entry, extension headers included.
pub fn entry_bytes(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    if spec.gnu_long_name {
        let mut name = spec.name.clone();
        name.push(0);
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(name.len() as u64);
        push_block(&mut out, h, &name);
    }
    if !spec.pax.is_empty() {
        let data: Vec<u8> = spec
            .pax
            .iter()
            .flat_map(|(k, v)| pax_record(k, v))
            .collect();
        let h = header(b"PaxHeader", EntryType::XHeader, data.len() as u64);
        push_block(&mut out, h, &data);
    }
    let mut h = header(&spec.name, spec.ty, spec.data.len() as u64);
    if spec.gnu_long_name {
        // A GNU L entry comes with a GNU header; the ustar magic would also do.
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..5].copy_from_slice(b"trunc");
    }
    h.set_mode(spec.mode);
    h.set_uid(spec.uid);
    h.set_gid(spec.gid);
    h.set_mtime(spec.mtime);
    if let Some(link) = &spec.link {
        let n = link.len().min(100);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    }
    if matches!(spec.ty, EntryType::Char | EntryType::Block) {
        h.set_device_major(spec.dev.0).unwrap();
        h.set_device_minor(spec.dev.1).unwrap();
    }
    push_block(&mut out, h, &spec.data);
    out
}

/// A whole tar: the entries and the two zero blocks that end it.
pub fn tar(specs: &[Spec]) -> Vec<u8> {
    let mut out: Vec<u8> = specs.iter().flat_map(entry_bytes).collect();
    out.extend_from_slice(&[0; 1024]);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// An outer directory holding the extraction target `dest` and an untouchable `sentinel`.
pub struct Sandbox {
    pub outer: tempfile::TempDir,
    pub dest: PathBuf,
    pub sentinel: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("dest");
        let sentinel = outer.path().join("sentinel");
        std::fs::create_dir(&dest).unwrap();
        std::fs::create_dir(&sentinel).unwrap();
        std::fs::write(sentinel.join("victim"), b"original").unwrap();
        Sandbox {
            outer,
            dest,
            sentinel,
        }
    }

    /// Panics if anything outside `dest` changed.
    pub fn assert_untouched(&self) {
        let mut top: Vec<_> = std::fs::read_dir(self.outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["dest", "sentinel"],
            "something was created next to dest"
        );
        let mut inside: Vec<_> = std::fs::read_dir(&self.sentinel)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        inside.sort();
        assert_eq!(
            inside,
            ["victim"],
            "something was created in the sentinel dir"
        );
        let victim = self.sentinel.join("victim");
        assert_eq!(std::fs::read(&victim).unwrap(), b"original");
        let meta = std::fs::symlink_metadata(&victim).unwrap();
        assert!(meta.is_file());
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dest.join(rel)
    }

    pub fn outer(&self) -> &Path {
        self.outer.path()
    }
}
