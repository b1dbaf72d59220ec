//! The runtime: a state directory with its images and boxes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_layers::Store;

use crate::defaults;
use crate::disk;
use crate::engine::{self, Programs, ResolvedEngine};
use crate::error::{Artefact, Error, Result};
use crate::failpoint;
use crate::home;
use crate::host;
use crate::info::{BoxInfo, EngineInfo, HostInfo};
use crate::layout::{Layout, MAX_SOCKET_PATH_LEN};
use crate::litebox::{LiteBox, RemoveMode};
use crate::liveness;
use crate::network::NetworkMode;
use crate::options::{BoxOptions, EngineKind, RuntimeOptions, SupervisorCommand};
use crate::recover;
use crate::state::{BoxRecord, Ending, StateDb, now_ms};
use crate::volume::VolumeSource;
use crate::volumes::{self, VolumeInfo};

/// The random bytes of a box id (64 hex digits).
const ID_BYTES: usize = 32;

/// The supervisor binary's name.
const SUPERVISOR_NAME: &str = "boxlite-supervisor";

/// A state directory of images and boxes; cheap to clone, usable from many tasks.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("home", &self.shared.layout.home())
            .finish_non_exhaustive()
    }
}

/// What every handle of one runtime shares.
pub(crate) struct Shared {
    pub(crate) options: RuntimeOptions,
    pub(crate) layout: Layout,
    pub(crate) store: Store,
    /// Serialises its own connection: shared by every task of the runtime as it is.
    pub(crate) db: StateDb,
    /// The registry client, made at the first pull (it loads the system's CA roots).
    pub(crate) registry: std::sync::OnceLock<registry::Client>,
}

impl Shared {
    /// Runs `f` on a blocking thread: the database and the filesystem must not stall the
    /// caller's async executor.
    pub(crate) async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| Error::Host(format!("a runtime task failed: {e}")))?
    }

    /// The record of box `key`, its state made truthful first: a box whose supervisor is
    /// gone without saying how it ended is `crashed`, never a ghost `running`.
    pub(crate) fn record(&self, key: &str) -> Result<BoxRecord> {
        let record = self.db.get_box(key)?;
        self.reconcile(record)
    }

    /// `record`, with a dead supervisor's box recorded crashed.
    pub(crate) fn reconcile(&self, record: BoxRecord) -> Result<BoxRecord> {
        if !record.state.is_active() {
            return Ok(record);
        }
        let lock = self.layout.box_dir(&record.id).supervisor_lock();
        // A live supervisor (the usual case) needs no write: reading a box must work on a
        // full disk, and must not queue behind every writer.
        if liveness::is_held(&lock)? {
            return Ok(record);
        }
        // Probed again inside the transaction: a supervisor takes the lock before it records
        // `starting`, so a box starting right now is never marked crashed.
        self.db.mark_ended_if_gone(
            &record.id,
            || Ok(!liveness::is_held(&lock)?),
            |pid, state| {
                Ending::Crashed(match pid {
                    Some(pid) => {
                        format!("its supervisor (pid {pid}) died while the box was {state}")
                    }
                    None => format!("its supervisor died while the box was {state}"),
                })
            },
        )?;
        self.db.get_box(&record.id)
    }

    /// What the engines need to know of this host.
    pub(crate) fn engine_host(&self) -> engine::Host {
        engine::Host {
            kvm: host::probe_kvm(),
            force_kvm: self.options.force_kvm,
        }
    }

    /// The engine `kind` means here, with its program.
    pub(crate) fn resolve_engine(&self, kind: EngineKind) -> Result<ResolvedEngine> {
        engine::resolve(kind, &self.engine_host(), &Programs::locate(&self.options))
    }

    /// The guest kernel to boot.
    pub(crate) fn kernel(&self) -> Result<PathBuf> {
        self.guest_file(
            self.options.kernel.as_ref(),
            &["vmlinux", "bzImage"],
            Artefact::Kernel,
            "cargo xtask kernel",
        )
    }

    /// The agent initramfs to boot.
    pub(crate) fn initramfs(&self) -> Result<PathBuf> {
        self.guest_file(
            self.options.initramfs.as_ref(),
            &["initramfs.cpio.gz"],
            Artefact::Initramfs,
            "cargo xtask guest",
        )
    }

    /// The explicit path (which must be a file), else the first of `names` in `<home>/guest`
    /// and then each of the options' guest directories.
    fn guest_file(
        &self,
        explicit: Option<&PathBuf>,
        names: &[&str],
        what: Artefact,
        build: &str,
    ) -> Result<PathBuf> {
        if let Some(path) = explicit {
            if path.is_file() {
                return Ok(path.clone());
            }
            return Err(Error::Missing {
                what,
                hint: format!("{} is not a file", path.display()),
            });
        }
        let dirs: Vec<PathBuf> = std::iter::once(self.layout.guest_dir())
            .chain(self.options.guest_dirs.iter().cloned())
            .collect();
        let found = dirs
            .iter()
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .find(|p| p.is_file());
        found.ok_or_else(|| Error::Missing {
            what,
            hint: format!(
                "no {} in {}; `{build}` builds it and installs it in the per-user guest \
                 directory",
                names.join(" or "),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// The virtio-fs daemon bind volumes need.
    pub(crate) fn virtiofsd(&self) -> Result<PathBuf> {
        crate::supervisor::volumes::locate_virtiofsd(self.options.virtiofsd.as_deref())
    }

    /// How to start a supervisor.
    pub(crate) fn supervisor(&self) -> Result<SupervisorCommand> {
        if let Some(command) = &self.options.supervisor {
            return Ok(command.clone());
        }
        host::beside_current_exe(SUPERVISOR_NAME)
            .or_else(|| host::find_program(SUPERVISOR_NAME))
            .map(SupervisorCommand::new)
            .ok_or_else(|| Error::Missing {
                what: Artefact::Supervisor,
                hint: "install it beside the program that uses boxlite or in PATH".into(),
            })
    }
}

impl Runtime {
    /// Opens (creating if needed) the runtime state in `options.home`.
    pub fn open(options: RuntimeOptions) -> Result<Runtime> {
        let layout = Layout::new(&options.home);
        home::prepare(layout.home())?;
        for dir in [layout.boxes_dir(), layout.tmp_dir(), layout.disks_dir()] {
            home::create_private_dir(&dir)?;
        }
        let store = Store::open(&options.home)?.with_max_layer_bytes(options.max_layer_bytes);
        let db = StateDb::open(&layout.state_db())?;
        home::make_private(&layout.state_db())?;
        remove_stale_scratch(&layout)?;
        // What a process killed while creating or removing a box left behind.
        recover::recover(&layout, &db)?;
        Ok(Runtime {
            shared: Arc::new(Shared {
                options,
                layout,
                store,
                db,
                registry: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        self.shared.layout.home()
    }

    /// The options the runtime was opened with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.shared.options
    }

    /// Creates a box (not started): checks the options, makes the image's base disk if it is
    /// the image's first box, and the box's writable disk.
    pub async fn create(&self, mut options: BoxOptions) -> Result<LiteBox> {
        options.validate()?;
        host::check_memory(options.memory_mib)?;
        // Refused now rather than at the first start: an engine that cannot run here, or
        // whose program is missing.
        let engine = self.shared.resolve_engine(options.engine)?;
        if options.cpus > engine.max_cpus() {
            return Err(Error::option(
                "cpus",
                options.cpus,
                format!(
                    "the {} engine runs a box on at most {} vCPUs",
                    engine.name(),
                    engine.max_cpus()
                ),
            ));
        }
        // The image's disk, the box's disk, the agent's channel, the card, the volumes.
        let devices =
            3 + usize::from(options.network.mode == NetworkMode::On) + options.volumes.len();
        if devices > engine.max_devices() {
            return Err(Error::option(
                "volumes",
                options.volumes.len(),
                format!(
                    "the {} engine gives a box {} virtio devices, and its disks, agent channel \
                     and network card take {}",
                    engine.name(),
                    engine.max_devices(),
                    devices - options.volumes.len()
                ),
            ));
        }
        self.pull_for_create(&options).await?;
        self.check_volumes(&options)?;
        let record = self
            .shared
            .blocking(move |shared| {
                let name = crate::images::resolve_name(&shared.store, &options.image);
                let image = shared.store.get(&name)?;
                defaults::apply_image(&mut options, &image.config.config);
                // Checked again: the image's settings are input too.
                options.validate()?;
                // Held until the box's row references the disk: `remove_image` takes the
                // same lock, so it sees the box, or the box sees no image.
                let _disk_lock =
                    disk::lock_base_disk(&shared.layout, &image.record.manifest_digest)?;
                disk::ensure_base_disk_locked(
                    &shared.store,
                    &shared.layout,
                    &shared.db,
                    &image,
                    shared.options.progress,
                )?;
                create_box(shared, options, image.record.manifest_digest.to_string())
            })
            .await?;
        Ok(LiteBox::new(self.shared.clone(), record))
    }

    /// The box with this id, unique id prefix or name.
    pub async fn get(&self, key: &str) -> Result<LiteBox> {
        let key = key.to_string();
        let record = self.shared.blocking(move |s| s.record(&key)).await?;
        Ok(LiteBox::new(self.shared.clone(), record))
    }

    /// Every box, oldest first, with truthful states.
    pub async fn list(&self) -> Result<Vec<BoxInfo>> {
        self.shared
            .blocking(|s| {
                s.db.list_boxes()?
                    .into_iter()
                    .map(|r| {
                        let mut info = BoxInfo::from(s.reconcile(r)?);
                        // Only a running box has a network; its report is one small file.
                        if info.state.is_active() {
                            let dir = s.layout.box_dir(&info.id);
                            info.network = crate::network::recorded(dir.dir());
                        }
                        Ok(info)
                    })
                    .collect()
            })
            .await
    }

    /// Removes a box and its files; a running box only with [`RemoveMode::Kill`].
    pub async fn remove(&self, key: &str, mode: RemoveMode) -> Result<()> {
        self.get(key).await?.remove(mode).await
    }

    /// Refuses volumes that cannot be attached: a bind volume's directory must exist (and
    /// virtiofsd be installed), a named volume must have been created.
    fn check_volumes(&self, options: &BoxOptions) -> Result<()> {
        for volume in &options.volumes {
            volume.check_source()?;
            match &volume.source {
                VolumeSource::Bind { .. } => {
                    self.shared.virtiofsd()?;
                }
                VolumeSource::Named { name } => {
                    volumes::get(&self.shared.layout, name)?;
                }
            }
        }
        Ok(())
    }

    /// Creates named volume `name`: a sparse ext4 disk of `size_gib` GiB (default
    /// [`crate::DEFAULT_VOLUME_SIZE_GIB`]).
    pub async fn create_volume(&self, name: &str, size_gib: Option<u64>) -> Result<VolumeInfo> {
        let name = name.to_string();
        self.shared
            .blocking(move |s| {
                let size = size_gib.unwrap_or(volumes::DEFAULT_VOLUME_SIZE_GIB);
                let record = volumes::create(&s.layout, &name, size)?;
                volumes::info(&s.layout, &s.db, record)
            })
            .await
    }

    /// Every named volume, by name.
    pub async fn volumes(&self) -> Result<Vec<VolumeInfo>> {
        self.shared
            .blocking(|s| {
                volumes::list(&s.layout)?
                    .into_iter()
                    .map(|r| volumes::info(&s.layout, &s.db, r))
                    .collect()
            })
            .await
    }

    /// Named volume `name`: its size, disk use and the boxes that list it.
    pub async fn volume(&self, name: &str) -> Result<VolumeInfo> {
        let name = name.to_string();
        self.shared
            .blocking(move |s| {
                let record = volumes::get(&s.layout, &name)?;
                volumes::info(&s.layout, &s.db, record)
            })
            .await
    }

    /// Removes named volume `name` and its content; refused while any box lists it.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.shared
            .blocking(move |s| volumes::remove(&s.layout, &s.db, &name))
            .await
    }

    /// The host, its engines and the guest artefacts.
    pub fn host_info(&self) -> HostInfo {
        let shared = &self.shared;
        let host = shared.engine_host();
        let programs = Programs::locate(&shared.options);
        let engines = engine::assess(&host, &programs)
            .into_iter()
            .map(|a| EngineInfo {
                name: a.name.into(),
                available: a.available,
                detail: a.detail,
            })
            .collect();
        HostInfo {
            home: self.home().to_path_buf(),
            kvm_hardware: host.kvm.is_hardware(),
            kvm: host.kvm.describe(),
            engines,
            auto_engine: match engine::resolve(EngineKind::Auto, &host, &programs) {
                Ok(engine) => engine.describe(),
                Err(e) => format!("none: {e}"),
            },
            kernel: shared.kernel().ok(),
            initramfs: shared.initramfs().ok(),
            supervisor: shared.supervisor().ok().map(|s| s.program),
            memory_mib: host::memory_total_mib().ok(),
            protections: crate::supervisor::jail::host(),
        }
    }
}

/// Makes the directory and disk of box `options` of the image with manifest `digest`, and
/// records it (the caller holds the image's base-disk lock). A crash at any step leaves
/// nothing a later open does not remove (see [`recover`]).
fn create_box(shared: &Shared, options: BoxOptions, digest: String) -> Result<BoxRecord> {
    let id = new_id()?;
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("box-{}", &id[..8]));
    let paths = shared.layout.box_dir(&id);
    let socket = paths.box_socket();
    if socket.as_os_str().len() > MAX_SOCKET_PATH_LEN {
        return Err(Error::InvalidInput(format!(
            "the state directory {} is too deep: the box's socket {} would exceed the \
             {MAX_SOCKET_PATH_LEN}-byte limit of Unix socket paths; use a shorter home",
            shared.layout.home().display(),
            socket.display(),
        )));
    }
    let record = BoxRecord::created(id.clone(), name, digest, options, now_ms());
    let abort_at = shared.options.abort_at.as_deref();
    // The directory first, locked: until the row is complete, the lock tells a sweep (or a
    // create wanting the name) whether this creator still lives.
    let _creating = recover::make_box_dir(&shared.layout, &paths)?;
    failpoint::hit(abort_at, failpoint::CREATE_DIR);
    let made = insert(shared, &record)
        .and_then(|()| {
            failpoint::hit(abort_at, failpoint::CREATE_ROW);
            disk::create_box_disk(&paths.disk(), record.options.disk_size_mib)
        })
        .and_then(|()| {
            failpoint::hit(abort_at, failpoint::CREATE_DISK);
            shared.db.complete_box(&id)
        });
    if let Err(e) = made {
        let _ = shared.db.remove_incomplete_box(&id);
        let _ = recover::discard(&shared.layout, paths.dir());
        return Err(e);
    }
    Ok(record)
}

/// Removes the scratch trees of base-disk builds that no process is making (a build holds
/// its image's base-disk lock): a crashed build's half tree may hold an image's setuid
/// binaries, and is never needed again.
fn remove_stale_scratch(layout: &Layout) -> Result<()> {
    let dir = layout.tmp_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => return Err(Error::io("listing", &dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(digest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(disk::SCRATCH_PREFIX))
            .and_then(|d| d.replacen('-', ":", 1).parse::<oci_layers::Digest>().ok())
        else {
            continue;
        };
        if let Some(_lock) = disk::try_lock_base_disk(layout, &digest)? {
            disk::remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Records `record` incomplete (reserving its name); a name held by an incomplete box whose
/// creator died is taken over.
fn insert(shared: &Shared, record: &BoxRecord) -> Result<()> {
    match shared.db.insert_incomplete_box(record) {
        Err(Error::NameInUse(_, other))
            if recover::reclaim(&shared.layout, &shared.db, &other)? =>
        {
            shared.db.insert_incomplete_box(record)
        }
        inserted => inserted,
    }
}

/// A fresh box id: 64 hex digits from the kernel's random source.
fn new_id() -> Result<String> {
    recover::random_hex::<ID_BYTES>()
}
