//! Writing images: OCI image layouts and `docker save` archives from directory trees or tar
//! streams. Used by tests, by `cargo xtask` to make demo and benchmark images, and by the
//! runtime to snapshot a container.

mod tree;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::error::{Error, Result};
use crate::spec::{
    ANNOTATION_REF_NAME, Compression, Descriptor, DockerArchiveImage, History, ImageConfig,
    ImageIndex, ImageManifest, MAX_MANIFEST_BYTES, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Platform,
    RootFs, RunConfig, parse_index, to_json,
};

pub use tree::write_tree;

/// zstd level for layers: zstd's default, a good speed/size balance.
const ZSTD_LEVEL: i32 = 3;

/// Where a layer's content comes from.
#[derive(Debug, Clone)]
pub enum LayerSource {
    /// A directory tree, tarred with full metadata.
    Dir(PathBuf),
    /// An uncompressed tar stream in memory.
    Tar(Vec<u8>),
    /// An uncompressed tar file on disk.
    TarFile(PathBuf),
}

/// How a `docker save` archive is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerArchiveFormat {
    /// `manifest.json`, `<id>.json` config, `<id>/layer.tar` layers (docker before 25).
    Legacy,
    /// An OCI layout (`oci-layout`, `index.json`, `blobs/`) plus `manifest.json` pointing into
    /// `blobs/` (docker 25 and later).
    OciLayout,
}

/// One layer as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltLayer {
    /// Descriptor of the stored (compressed) blob.
    pub descriptor: Descriptor,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
}

/// What a build wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// Descriptor of the manifest blob.
    pub manifest: Descriptor,
    /// Descriptor of the config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<BuiltLayer>,
}

/// Builds an image from layers and run settings, and writes it as an OCI layout or a
/// `docker save` archive.
#[derive(Debug, Clone)]
pub struct LayoutBuilder {
    layers: Vec<(LayerSource, Compression)>,
    run: RunConfig,
    architecture: String,
    algorithm: Algorithm,
    created: Option<String>,
}

impl Default for LayoutBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayoutBuilder {
    /// An image with no layers for the host's architecture, blobs named by sha256.
    pub fn new() -> LayoutBuilder {
        LayoutBuilder {
            layers: Vec::new(),
            run: RunConfig::default(),
            architecture: Platform::host().architecture,
            algorithm: Algorithm::Sha256,
            created: None,
        }
    }

    /// Adds a layer made from the directory tree `dir`.
    pub fn layer_dir(mut self, dir: impl Into<PathBuf>, compression: Compression) -> Self {
        self.layers
            .push((LayerSource::Dir(dir.into()), compression));
        self
    }

    /// Adds a layer from an uncompressed tar stream.
    pub fn layer_tar(mut self, tar: Vec<u8>, compression: Compression) -> Self {
        self.layers.push((LayerSource::Tar(tar), compression));
        self
    }

    /// Adds a layer from an uncompressed tar file.
    pub fn layer_tar_file(mut self, path: impl Into<PathBuf>, compression: Compression) -> Self {
        self.layers
            .push((LayerSource::TarFile(path.into()), compression));
        self
    }

    /// Sets all run settings (env, cmd, entrypoint, working dir, user …) at once.
    pub fn run_config(mut self, run: RunConfig) -> Self {
        self.run = run;
        self
    }

    /// Sets the environment (`NAME=value` entries).
    pub fn env<S: Into<String>>(mut self, env: impl IntoIterator<Item = S>) -> Self {
        self.run.env = env.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the default command.
    pub fn cmd<S: Into<String>>(mut self, cmd: impl IntoIterator<Item = S>) -> Self {
        self.run.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the entrypoint.
    pub fn entrypoint<S: Into<String>>(mut self, ep: impl IntoIterator<Item = S>) -> Self {
        self.run.entrypoint = Some(ep.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.run.working_dir = dir.to_string();
        self
    }

    /// Sets the user to run as.
    pub fn user(mut self, user: &str) -> Self {
        self.run.user = user.to_string();
        self
    }

    /// Sets the architecture recorded in the config (default: the host's).
    pub fn architecture(mut self, arch: &str) -> Self {
        self.architecture = arch.to_string();
        self
    }

    /// Sets the creation time recorded in the config (RFC 3339); unset keeps builds
    /// reproducible.
    pub fn created(mut self, created: &str) -> Self {
        self.created = Some(created.to_string());
        self
    }

    /// Names blobs with `algorithm` (diff_ids stay sha256, as docker requires).
    pub fn digest_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Writes the image into the OCI layout at `dir` (created if needed; an existing layout
    /// keeps its other images) under reference name `ref_name`.
    pub fn write_layout(&self, dir: &Path, ref_name: &str) -> Result<BuiltImage> {
        let blobs = dir.join("blobs").join(self.algorithm.name());
        fs::create_dir_all(&blobs).map_err(|e| Error::io("creating", &blobs, e))?;
        write_file(
            &dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let built = self.write_blobs(&blobs)?;
        let index_path = dir.join("index.json");
        let mut index = if index_path.exists() {
            let bytes = read_small(&index_path)?;
            parse_index(&bytes, &format!("{}", index_path.display()))?
        } else {
            ImageIndex {
                schema_version: 2,
                media_type: Some(OCI_INDEX.to_string()),
                manifests: Vec::new(),
                annotations: Default::default(),
            }
        };
        index
            .manifests
            .retain(|d| d.annotation(ANNOTATION_REF_NAME) != Some(ref_name));
        let mut entry = built.manifest.clone();
        entry
            .annotations
            .insert(ANNOTATION_REF_NAME.to_string(), ref_name.to_string());
        entry.platform = Some(Platform {
            architecture: self.architecture.clone(),
            os: "linux".to_string(),
            variant: None,
        });
        index.manifests.push(entry);
        write_file(&index_path, &to_json(&index)?)?;
        Ok(built)
    }

    /// Writes the image as a `docker save` tar archive at `path`, tagged `repo_tag`.
    pub fn write_docker_archive(
        &self,
        path: &Path,
        repo_tag: &str,
        format: DockerArchiveFormat,
    ) -> Result<BuiltImage> {
        let parent = path.parent().unwrap_or(Path::new("."));
        let staging = tempfile::tempdir_in(parent)
            .map_err(|e| Error::io("creating a directory in", parent, e))?;
        let built = match format {
            DockerArchiveFormat::OciLayout => self.write_layout(staging.path(), repo_tag)?,
            DockerArchiveFormat::Legacy => self.write_blobs(staging.path())?,
        };
        let blob_rel = |d: &Digest| match format {
            DockerArchiveFormat::OciLayout => format!("blobs/{}/{}", d.algorithm().name(), d.hex()),
            DockerArchiveFormat::Legacy => d.hex().to_string(),
        };
        let config_rel = match format {
            DockerArchiveFormat::OciLayout => blob_rel(&built.config.digest),
            DockerArchiveFormat::Legacy => format!("{}.json", built.config.digest.hex()),
        };
        let layer_rels: Vec<String> = built
            .layers
            .iter()
            .map(|l| match format {
                DockerArchiveFormat::OciLayout => blob_rel(&l.descriptor.digest),
                // Named by blob digest: the same content twice is the same file.
                DockerArchiveFormat::Legacy => {
                    format!("{}/layer.tar", l.descriptor.digest.hex())
                }
            })
            .collect();
        let manifest = vec![DockerArchiveImage {
            config: config_rel.clone(),
            repo_tags: vec![repo_tag.to_string()],
            layers: layer_rels.clone(),
        }];

        let file = File::create(path).map_err(|e| Error::io("creating", path, e))?;
        let mut tar = tar::Builder::new(BufWriter::new(file));
        let add = |tar: &mut tar::Builder<BufWriter<File>>, rel: &str, src: &Path| -> Result<()> {
            let mut f = File::open(src).map_err(|e| Error::io("opening", src, e))?;
            let len = f
                .metadata()
                .map_err(|e| Error::io("reading", src, e))?
                .len();
            append_bytes(tar, rel, len, &mut f).map_err(|e| Error::io("writing", path, e))
        };
        match format {
            DockerArchiveFormat::OciLayout => {
                for name in ["oci-layout", "index.json"] {
                    add(&mut tar, name, &staging.path().join(name))?;
                }
                let mut blobs: Vec<&Descriptor> = vec![&built.config, &built.manifest];
                blobs.extend(built.layers.iter().map(|l| &l.descriptor));
                for d in blobs {
                    let rel = blob_rel(&d.digest);
                    add(&mut tar, &rel, &staging.path().join(&rel))?;
                }
            }
            DockerArchiveFormat::Legacy => {
                add(
                    &mut tar,
                    &config_rel,
                    &staging.path().join(built.config.digest.hex()),
                )?;
                for (layer, rel) in built.layers.iter().zip(&layer_rels) {
                    add(
                        &mut tar,
                        rel,
                        &staging.path().join(layer.descriptor.digest.hex()),
                    )?;
                }
            }
        }
        let json = to_json(&manifest)?;
        append_bytes(&mut tar, "manifest.json", json.len() as u64, &mut &json[..])
            .map_err(|e| Error::io("writing", path, e))?;
        let out = tar
            .into_inner()
            .map_err(|e| Error::io("writing", path, e))?;
        out.into_inner()
            .map_err(|e| Error::io("writing", path, e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io("syncing", path, e))?;
        Ok(built)
    }

    /// Writes layers, config and manifest as blobs named by hex digest into `dir`.
    fn write_blobs(&self, dir: &Path) -> Result<BuiltImage> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for (source, compression) in &self.layers {
            layers.push(write_layer(source, *compression, dir, self.algorithm)?);
        }
        let config = ImageConfig {
            created: self.created.clone(),
            author: None,
            architecture: self.architecture.clone(),
            os: "linux".to_string(),
            variant: None,
            config: self.run.clone(),
            rootfs: RootFs {
                kind: "layers".to_string(),
                diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
            },
            history: layers
                .iter()
                .map(|_| History {
                    created: self.created.clone(),
                    created_by: Some("oci-layers LayoutBuilder".to_string()),
                    ..History::default()
                })
                .collect(),
        };
        let config = write_json_blob(dir, self.algorithm, OCI_CONFIG, &config)?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            config: config.clone(),
            layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
            annotations: Default::default(),
        };
        let manifest = write_json_blob(dir, self.algorithm, OCI_MANIFEST, &manifest)?;
        Ok(BuiltImage {
            manifest,
            config,
            layers,
        })
    }
}

/// Tars (if needed), compresses and writes one layer into `dir` as `<hex of blob digest>`.
fn write_layer(
    source: &LayerSource,
    compression: Compression,
    dir: &Path,
    algorithm: Algorithm,
) -> Result<BuiltLayer> {
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
    let blob = HashingWriter::new(BufWriter::new(tmp), algorithm);
    let (blob, diff_id) = match compression {
        Compression::None => write_tar(source, blob)?,
        Compression::Gzip => {
            let enc = flate2::write::GzEncoder::new(blob, flate2::Compression::default());
            let (enc, diff_id) = write_tar(source, enc)?;
            (
                enc.finish()
                    .map_err(|e| Error::io("compressing layer into", dir, e))?,
                diff_id,
            )
        }
        Compression::Zstd => {
            let enc = zstd::Encoder::new(blob, ZSTD_LEVEL)
                .map_err(|e| Error::io("compressing layer into", dir, e))?;
            let (enc, diff_id) = write_tar(source, enc)?;
            (
                enc.finish()
                    .map_err(|e| Error::io("compressing layer into", dir, e))?,
                diff_id,
            )
        }
    };
    let size = blob.written();
    let (buf, digest) = blob.finish();
    let tmp = buf
        .into_inner()
        .map_err(|e| Error::io("writing layer into", dir, e.into_error()))?;
    let dest = dir.join(digest.hex());
    tmp.persist(&dest)
        .map_err(|e| Error::io("saving layer", &dest, e.error))?;
    Ok(BuiltLayer {
        descriptor: Descriptor::new(compression.oci_media_type(), digest, size),
        diff_id,
    })
}

/// Writes the uncompressed tar of `source` into `out`; returns `out` and the tar's sha256.
fn write_tar<W: Write>(source: &LayerSource, out: W) -> Result<(W, Digest)> {
    let mut w = HashingWriter::new(out, Algorithm::Sha256);
    match source {
        LayerSource::Dir(dir) => {
            w = write_tree(dir, w)?;
        }
        LayerSource::Tar(bytes) => {
            w.write_all(bytes)
                .map_err(|e| Error::io("writing layer from memory to", "(layer)", e))?;
        }
        LayerSource::TarFile(path) => {
            let mut f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
            io::copy(&mut f, &mut w).map_err(|e| Error::io("copying layer", path, e))?;
        }
    }
    Ok(w.finish())
}

fn write_json_blob<T: serde::Serialize>(
    dir: &Path,
    algorithm: Algorithm,
    media_type: &str,
    value: &T,
) -> Result<Descriptor> {
    let bytes = to_json(value)?;
    let digest = Digest::of(algorithm, &bytes);
    write_file(&dir.join(digest.hex()), &bytes)?;
    Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| Error::io("writing", path, e))
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(bytes)
}

/// Appends a regular file entry with fixed, reproducible metadata.
fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    rel: &str,
    len: u64,
    data: &mut dyn Read,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(len);
    h.set_mtime(0);
    tar.append_data(&mut h, rel, data)
}

#[cfg(test)]
mod tests;
