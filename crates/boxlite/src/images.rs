//! Images, through the runtime: import, list, inspect, remove (refused while boxes use the
//! image) and unpack. Honest blocking methods: they read and write many files.

use std::path::Path;

use oci_layers::{LayerCache, Store};
use registry::{Client, Credential, PullOptions, Pulled, Reference};

use crate::disk;
use crate::error::{Error, Result};
use crate::options::{BoxOptions, PullPolicy};
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

    /// The image with this name, reference it was pulled by (`alpine` finds
    /// `docker.io/library/alpine:latest`) or digest prefix, with its manifest and config.
    pub fn image(&self, name: &str) -> Result<Image> {
        let store = &self.shared.store;
        Ok(store.get(&resolve_name(store, name))?)
    }

    /// Pulls `reference` (`alpine`, `ghcr.io/o/r:tag`, `repo@sha256:…`) from its registry
    /// into the store, its layers extracted as they arrive, and records it under the full
    /// reference (`docker.io/library/alpine:latest`).
    pub async fn pull(&self, reference: &str, options: PullOptions) -> Result<Pulled> {
        let reference = Reference::parse(reference)?;
        let client = self.registry_client()?;
        let store = self.shared.store.clone();
        let cache = LayerCache::open(store.home())
            .ok()
            .map(|c| c.with_max_layer_bytes(store.max_layer_bytes()));
        Ok(client
            .pull(&store, cache.as_ref(), &reference, &options)
            .await?)
    }

    /// Checks `credential` against `registry` and saves it in the docker config file (or
    /// its credential helper) for later pulls; returns where it went.
    pub async fn login(&self, registry: &str, credential: Credential) -> Result<String> {
        let registry = login_registry(registry)?;
        let client = self.registry_client()?;
        client.check_login(&registry, &credential).await?;
        let Credential::Basic { username, password } = credential else {
            return Err(Error::InvalidInput(
                "only a username and password can be saved".into(),
            ));
        };
        let path = self.docker_config()?;
        let saved = tokio::task::spawn_blocking(move || {
            registry::credentials::store_login(&path, &registry, &username, &password)
        })
        .await
        .map_err(|e| Error::Host(format!("saving the login: {e}")))??;
        Ok(saved)
    }

    /// Forgets the saved login for `registry`; returns whether there was one.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        let registry = login_registry(registry)?;
        Ok(registry::credentials::remove_login(
            &self.docker_config()?,
            &registry,
        )?)
    }

    fn docker_config(&self) -> Result<std::path::PathBuf> {
        self.shared
            .options
            .registry
            .credentials
            .docker_config
            .clone()
            .ok_or_else(|| {
                Error::InvalidInput("no docker config file is set to save logins in".into())
            })
    }

    /// The registry client, made once.
    fn registry_client(&self) -> Result<Client> {
        if let Some(c) = self.shared.registry.get() {
            return Ok(c.clone());
        }
        let client = Client::new(self.shared.options.registry.clone())?;
        Ok(self.shared.registry.get_or_init(|| client).clone())
    }

    /// Pulls the image of a box about to be made, as its pull policy says.
    pub(crate) async fn pull_for_create(&self, options: &BoxOptions) -> Result<()> {
        let present = || {
            let store = &self.shared.store;
            store.record(&resolve_name(store, &options.image)).is_ok()
        };
        match options.pull {
            PullPolicy::Never => Ok(()),
            PullPolicy::Missing if present() => Ok(()),
            // Not a reference (a digest prefix, an odd local name): nothing to pull.
            PullPolicy::Missing if Reference::parse(&options.image).is_err() => Ok(()),
            PullPolicy::Always => {
                self.pull(&options.image, PullOptions::default()).await?;
                Ok(())
            }
            PullPolicy::Missing => match self.pull(&options.image, PullOptions::default()).await {
                Ok(_) => Ok(()),
                Err(e) => Err(not_here(&options.image, e)),
            },
        }
    }

    /// Assembles the root filesystem of image `name` into `dest` (missing, empty, or a rootfs
    /// this method left before).
    pub fn unpack_image(&self, name: &str, dest: &Path) -> Result<UnpackReport> {
        let store = &self.shared.store;
        Ok(store.unpack(
            &resolve_name(store, name),
            dest,
            self.shared.options.progress,
        )?)
    }

    /// Removes image `name` (and its base disk, unless another name keeps the same image);
    /// refused while boxes use it, naming them.
    pub fn remove_image(&self, name: &str) -> Result<GcReport> {
        let shared = &self.shared;
        let store = &shared.store;
        let resolved = resolve_name(store, name);
        let name = resolved.as_str();
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

/// The name to look `name` up by: itself if an image has it (or it is a digest prefix), else
/// the full reference it stands for when an image was pulled by that (`alpine` →
/// `docker.io/library/alpine:latest`).
pub(crate) fn resolve_name(store: &Store, name: &str) -> String {
    if store.record(name).is_ok() {
        return name.to_string();
    }
    match Reference::parse(name) {
        Ok(r) if store.record(&r.to_string()).is_ok() => r.to_string(),
        _ => name.to_string(),
    }
}

/// The registry a `login` names: a host, or anything a reference starts with
/// (`https://index.docker.io/v1/` and `docker.io` are Docker Hub).
fn login_registry(input: &str) -> Result<String> {
    let host = registry::credentials::normalise_key(input.trim());
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if host.is_empty() || !host.chars().all(ok) {
        return Err(Error::InvalidInput(format!(
            "{input:?} is not a registry: give a host name with an optional :port"
        )));
    }
    Ok(host)
}

/// The error of a pull made because `image` is not here: says both (docker's "Unable to find
/// image locally"), keeping the pull's kind.
pub fn not_here(image: &str, pull: Error) -> Error {
    match pull {
        Error::Registry(e) => Error::Registry(registry::Error::NotHere {
            image: image.to_string(),
            source: Box::new(e),
        }),
        other => other,
    }
}
