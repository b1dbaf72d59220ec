//! Layer tarballs built with the tar crate, optionally gzip-compressed, with
//! both digests a manifest and a config need.

use std::io::Write;

use anyhow::{Context, Result};
use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;

use super::sha256_digest;
use crate::util::SplitMix;

/// Fixed mtime so the same entries always give the same digests.
const MTIME: u64 = 1_700_000_000;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `tar+gzip`.
    Gzip,
    /// Plain `tar`.
    None,
}

/// One tar entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Path inside the layer, relative (`dir/file`).
        path: String,
        /// Contents.
        data: Vec<u8>,
        /// Permission bits, e.g. `0o644`.
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Path inside the layer.
        path: String,
        /// Permission bits, e.g. `0o755`.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Path inside the layer.
        path: String,
        /// Where it points.
        target: String,
    },
}

/// A built layer: the blob bytes and its identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    blob: Vec<u8>,
    digest: String,
    diff_id: String,
    compression: Compression,
    tar_len: u64,
}

impl Layer {
    /// `files` files of `bytes_per_file` pseudo-random bytes (fixed by
    /// `seed`) under `layer-<seed>/`, mode 0644, plus that directory and a
    /// symlink `layer-<seed>/link` to the first file; gzip-compressed.
    pub fn random_files(seed: u64, files: usize, bytes_per_file: usize) -> Result<Layer> {
        let dir = format!("layer-{seed}");
        let mut rng = SplitMix::new(seed);
        let mut entries = vec![Entry::Dir {
            path: dir.clone(),
            mode: 0o755,
        }];
        for i in 0..files {
            let mut data = vec![0u8; bytes_per_file];
            rng.fill(&mut data);
            entries.push(Entry::File {
                path: format!("{dir}/file-{i}.bin"),
                data,
                mode: 0o644,
            });
        }
        if files > 0 {
            entries.push(Entry::Symlink {
                path: format!("{dir}/link"),
                target: "file-0.bin".into(),
            });
        }
        Self::from_entries(&entries, Compression::Gzip)
    }

    /// A layer of exactly `entries`, in order.
    pub fn from_entries(entries: &[Entry], compression: Compression) -> Result<Layer> {
        let tar = build_tar(entries)?;
        Self::from_tar(tar, compression)
    }

    /// A layer from an already built tar (e.g. one with whiteouts).
    pub fn from_tar(tar: Vec<u8>, compression: Compression) -> Result<Layer> {
        let diff_id = sha256_digest(&tar);
        let tar_len = tar.len() as u64;
        let blob = match compression {
            Compression::None => tar,
            Compression::Gzip => {
                let mut gz = GzEncoder::new(Vec::new(), GzLevel::fast());
                gz.write_all(&tar).context("gzip-compressing a layer")?;
                gz.finish().context("finishing a gzip stream")?
            }
        };
        Ok(Layer {
            digest: sha256_digest(&blob),
            blob,
            diff_id,
            compression,
            tar_len,
        })
    }

    /// The blob as pushed (compressed if gzip).
    pub fn bytes(&self) -> &[u8] {
        &self.blob
    }

    /// `sha256:` of the blob, the manifest's layer digest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Hex part of [`Layer::digest`], what the proxy faults take.
    pub fn digest_hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// `sha256:` of the uncompressed tar, the config's diff_id.
    pub fn diff_id(&self) -> &str {
        &self.diff_id
    }

    /// Blob size in bytes.
    pub fn size(&self) -> u64 {
        self.blob.len() as u64
    }

    /// Size of the uncompressed tar.
    pub fn tar_len(&self) -> u64 {
        self.tar_len
    }

    /// How the blob is compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }
}

/// Serialises entries into a tar with fixed ownership and mtime.
fn build_tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        match entry {
            Entry::File { path, data, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())
            }
            Entry::Dir { path, mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{}/", path.trim_end_matches('/')), &[][..])
            }
            Entry::Symlink { path, target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)
            }
        }
        .with_context(|| format!("adding {entry:?} to a tar"))?;
    }
    b.into_inner().context("finishing a tar")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Read;

    #[test]
    fn random_layer_is_deterministic_and_readable() {
        let a = Layer::random_files(7, 3, 1000).unwrap();
        let b = Layer::random_files(7, 3, 1000).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_ne!(
            a.digest(),
            Layer::random_files(8, 3, 1000).unwrap().digest()
        );
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(a.bytes())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(sha256_digest(&tar), a.diff_id());
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "layer-7/",
                "layer-7/file-0.bin",
                "layer-7/file-1.bin",
                "layer-7/file-2.bin",
                "layer-7/link"
            ]
        );
    }
}
