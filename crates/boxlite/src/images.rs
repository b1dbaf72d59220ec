//! Images, through the runtime: import, list, inspect, remove (refused while boxes use the
//! image) and unpack. Honest blocking methods: they read and write many files.

use std::path::Path;

use crate::disk;
use crate::error::{Error, Result};
use crate::runtime::Runtime;

pub use oci_layers::rootfs::{AssembleReport as UnpackReport, Method as UnpackMethod};
pub use oci_layers::{GcReport, Image, ImageRecord as ImageInfo};

impl Runtime {
    /// Imports an OCI image layout (directory or tar) or a `docker save` archive, named
    /// `name` (default: the name the image carries, else its short id).
    pub fn import_image(&self, path: &Path, name: Option<&str>) -> Result<ImageInfo> {
        Ok(self
            .shared
            .store
            .import(path, name, self.shared.options.progress)?)
    }

    /// Every image, by name.
    pub fn images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.shared.store.list()?)
    }

    /// The image with this name or digest prefix, with its manifest and config.
    pub fn image(&self, name: &str) -> Result<Image> {
        Ok(self.shared.store.get(name)?)
    }

    /// Assembles the root filesystem of image `name` into `dest` (missing, empty, or a rootfs
    /// this method left before).
    pub fn unpack_image(&self, name: &str, dest: &Path) -> Result<UnpackReport> {
        Ok(self
            .shared
            .store
            .unpack(name, dest, self.shared.options.progress)?)
    }

    /// Removes image `name` (and its base disk, unless another name keeps the same image);
    /// refused while boxes use it, naming them.
    pub fn remove_image(&self, name: &str) -> Result<GcReport> {
        let shared = &self.shared;
        let store = &shared.store;
        let image = store.get(name)?;
        let digest = image.record.manifest_digest.clone();
        let _disk_lock = disk::lock_base_disk(&shared.layout, &digest)?;
        // Another name for the same manifest keeps its boxes (and base disk) working.
        let kept = store
            .list()?
            .iter()
            .any(|other| other.name != image.record.name && other.manifest_digest == digest);
        if !kept {
            let ids = shared.db.boxes_using_image(&digest.to_string())?;
            let users: Vec<String> = ids
                .iter()
                .map(|id| {
                    shared
                        .db
                        .get_box(id)
                        .map_or_else(|_| id.clone(), |b| b.name)
                })
                .collect();
            if !users.is_empty() {
                let (count, them) = match users.len() {
                    1 => ("1 box".to_string(), "it"),
                    n => (format!("{n} boxes"), "them"),
                };
                return Err(Error::InvalidInput(format!(
                    "image {name} is used by {count}: {}; remove {them} first",
                    users.join(", ")
                )));
            }
        }
        let report = store.remove(name)?;
        if !kept {
            disk::remove_base_disk_locked(&shared.layout, &shared.db, &digest)?;
        }
        Ok(report)
    }
}
