//! The runtime: a state directory with its images and boxes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_layers::Store;
use serde::Serialize;

use crate::defaults;
use crate::disk;
use crate::engine;
use crate::error::{Error, Result};
use crate::host;
use crate::layout::Layout;
use crate::litebox::LiteBox;
use crate::liveness;
use crate::options::{BoxOptions, EngineKind, RuntimeOptions, SupervisorCommand};
use crate::state::{BoxRecord, BoxState, StateDb, now_ms};

/// What [`Runtime::list`] and [`LiteBox::info`] report about a box.
pub type BoxInfo = BoxRecord;

/// A state directory of images and boxes; cheap to clone, usable from many tasks.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
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
    // Serialises its own connection: shared by every task of the runtime as it is.
    db: StateDb,
}

impl Shared {
    /// Runs `f` on the state database.
    pub(crate) fn db<T>(&self, f: impl FnOnce(&StateDb) -> Result<T>) -> Result<T> {
        f(&self.db)
    }

    /// The record of box `key`, its state made truthful first: a box whose supervisor is
    /// gone without saying how it ended is `crashed`, never a ghost `running`.
    pub(crate) fn record(&self, key: &str) -> Result<BoxRecord> {
        let record = self.db(|db| db.get_box(key))?;
        self.reconcile(record)
    }

    pub(crate) fn reconcile(&self, record: BoxRecord) -> Result<BoxRecord> {
        if !record.state.is_active() {
            return Ok(record);
        }
        let lock = self.layout.box_dir(&record.id).supervisor_lock();
        // Probed inside the transaction: a supervisor takes the lock before it records
        // `starting`, so a box starting right now is never marked crashed.
        self.db(|db| {
            db.update_box(&record.id, |r| {
                if r.state.is_active() && !liveness::is_held(&lock)? {
                    r.reason = Some(match r.supervisor_pid {
                        Some(pid) => format!(
                            "its supervisor (pid {pid}) died while the box was {}",
                            r.state
                        ),
                        None => format!("its supervisor died while the box was {}", r.state),
                    });
                    r.state = BoxState::Crashed;
                    r.stopped_at_ms = Some(now_ms());
                    r.supervisor_pid = None;
                    r.vm_pid = None;
                }
                Ok(())
            })
        })
    }

    /// The guest kernel to boot.
    pub(crate) fn kernel(&self) -> Result<PathBuf> {
        let guest = self.layout.guest_dir();
        find_artefact(
            self.options.kernel.as_ref(),
            "BOXLITE_KERNEL",
            &[guest.join("vmlinux"), guest.join("bzImage")],
        )
        .ok_or_else(|| Error::Missing {
            what: "the guest kernel".into(),
            hint: format!(
                "{}build it with `cargo xtask kernel` and set BOXLITE_KERNEL to the vmlinux \
                 in the directory it prints, or copy it to {}",
                named(self.options.kernel.as_ref(), "BOXLITE_KERNEL"),
                guest.join("vmlinux").display()
            ),
        })
    }

    /// The agent initramfs to boot.
    pub(crate) fn initramfs(&self) -> Result<PathBuf> {
        let guest = self.layout.guest_dir();
        find_artefact(
            self.options.initramfs.as_ref(),
            "BOXLITE_INITRAMFS",
            &[guest.join("initramfs.cpio.gz")],
        )
        .ok_or_else(|| Error::Missing {
            what: "the guest agent's initramfs".into(),
            hint: format!(
                "{}build it with `cargo xtask guest` and set BOXLITE_INITRAMFS to the file it \
                 prints, or copy it to {}",
                named(self.options.initramfs.as_ref(), "BOXLITE_INITRAMFS"),
                guest.join("initramfs.cpio.gz").display()
            ),
        })
    }

    /// QEMU, if found.
    pub(crate) fn qemu(&self) -> Option<PathBuf> {
        self.options
            .qemu
            .clone()
            .or_else(|| std::env::var_os("BOXLITE_QEMU").map(PathBuf::from))
            .or_else(|| host::find_program("qemu-system-x86_64"))
    }

    /// `boxlite-vmm`, if found.
    pub(crate) fn vmm(&self) -> Option<PathBuf> {
        self.options
            .vmm
            .clone()
            .or_else(|| std::env::var_os("BOXLITE_VMM").map(PathBuf::from))
            .or_else(|| beside_current_exe(VMM_NAME))
            .or_else(|| host::find_program(VMM_NAME))
    }

    /// The engines' programs, where found.
    pub(crate) fn programs(&self) -> engine::Programs {
        engine::Programs {
            qemu: self.qemu(),
            vmm: self.vmm(),
        }
    }

    /// How to start a supervisor.
    pub(crate) fn supervisor(&self) -> Result<SupervisorCommand> {
        if let Some(command) = &self.options.supervisor {
            return Ok(command.clone());
        }
        let program = std::env::var_os("BOXLITE_SUPERVISOR")
            .map(PathBuf::from)
            .or_else(|| beside_current_exe(SUPERVISOR_NAME))
            .or_else(|| host::find_program(SUPERVISOR_NAME))
            .ok_or_else(|| Error::Missing {
                what: SUPERVISOR_NAME.into(),
                hint: "install it beside the program that uses boxlite, put it in PATH, or set \
                       BOXLITE_SUPERVISOR"
                    .into(),
            })?;
        Ok(SupervisorCommand {
            program,
            args: Vec::new(),
        })
    }
}

/// The supervisor binary's name.
const SUPERVISOR_NAME: &str = "boxlite-supervisor";

/// The kvm engine's binary's name.
const VMM_NAME: &str = "boxlite-vmm";

/// Program `name` beside the running program, or one directory up (where cargo puts
/// binaries when the running program is a test in `target/*/deps`).
fn beside_current_exe(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

/// The explicit path, else the one in `env`, else the first default that exists; an
/// explicit or `env` path must exist too.
fn find_artefact(explicit: Option<&PathBuf>, env: &str, defaults: &[PathBuf]) -> Option<PathBuf> {
    let chosen = explicit.cloned().or_else(|| {
        std::env::var_os(env)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match chosen {
        Some(path) => path.is_file().then_some(path),
        None => defaults.iter().find(|p| p.is_file()).cloned(),
    }
}

/// "PATH is not a file; " for the path the caller or the environment named, if any.
fn named(explicit: Option<&PathBuf>, env: &str) -> String {
    let chosen = explicit.cloned().or_else(|| {
        std::env::var_os(env)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match chosen {
        Some(path) => format!("{} is not a file; ", path.display()),
        None => String::new(),
    }
}

/// What `boxlite info` reports: the host, the engines and the guest.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    /// The state directory.
    pub home: PathBuf,
    /// Whether hardware KVM is usable.
    pub kvm_hardware: bool,
    /// What /dev/kvm is, in words.
    pub kvm: String,
    /// Each engine and whether it can run here.
    pub engines: Vec<EngineInfo>,
    /// What `--engine auto` picks.
    pub auto_engine: String,
    /// The guest kernel, if found.
    pub kernel: Option<PathBuf>,
    /// The agent initramfs, if found.
    pub initramfs: Option<PathBuf>,
    /// The supervisor program, if found.
    pub supervisor: Option<PathBuf>,
    /// Host memory in MiB.
    pub memory_mib: Option<u64>,
}

/// One engine's availability.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    /// `kvm` or `qemu`.
    pub name: String,
    /// Whether it can run boxes here.
    pub available: bool,
    /// Why (not), in words.
    pub detail: String,
}

impl Runtime {
    /// Opens (creating if needed) the runtime state in `options.home`.
    pub fn open(options: RuntimeOptions) -> Result<Runtime> {
        let layout = Layout::new(&options.home);
        for dir in [layout.boxes_dir(), layout.tmp_dir(), layout.disks_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let store = Store::open(&options.home)?;
        let db = StateDb::open(&layout.state_db())?;
        Ok(Runtime {
            shared: Arc::new(Shared {
                options,
                layout,
                store,
                db,
            }),
        })
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        self.shared.layout.home()
    }

    /// The image store (import, list, remove images).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Creates a box (not started): checks the options, makes the image's base disk if it is
    /// the image's first box, and the box's writable disk.
    pub async fn create(&self, mut options: BoxOptions) -> Result<LiteBox> {
        options.validate()?;
        host::check_memory(options.memory_mib)?;
        // Refused now rather than at the first start: `--engine kvm` on a host without
        // hardware KVM, or an engine whose program is missing.
        engine::resolve(options.engine, &host::probe_kvm(), &self.shared.programs())?;
        let shared = self.shared.clone();
        let record = tokio::task::spawn_blocking(move || {
            let image = shared.store.get(&options.image)?;
            defaults::apply_image(&mut options, &image.config.config);
            // Checked again: the image's settings are input too.
            options.validate()?;
            // Held until the box's row references the disk: `remove_image` takes the same
            // lock, so it sees the box, or the box sees no image.
            let _disk_lock = disk::lock_base_disk(&shared.layout, &image.record.manifest_digest)?;
            disk::ensure_base_disk_locked(
                &shared.store,
                &shared.layout,
                &shared.db,
                &image,
                shared.options.progress,
            )?;
            let id = new_id()?;
            let name = options
                .name
                .clone()
                .unwrap_or_else(|| format!("box-{}", &id[..8]));
            let record = BoxRecord {
                id: id.clone(),
                name,
                image: options.image.clone(),
                image_digest: image.record.manifest_digest.to_string(),
                options,
                state: BoxState::Created,
                created_at_ms: now_ms(),
                started_at_ms: None,
                stopped_at_ms: None,
                engine: None,
                supervisor_pid: None,
                vm_pid: None,
                boot_ms: None,
                exec_count: 0,
                bytes_streamed: 0,
                exit_code: None,
                reason: None,
            };
            // The row first: it reserves the name before any file exists.
            shared.db(|db| db.insert_box(&record))?;
            let paths = shared.layout.box_dir(&id);
            let socket = paths.agent_socket();
            if socket.as_os_str().len() > crate::layout::MAX_SOCKET_PATH_LEN {
                let _ = shared.db(|db| db.remove_box(&id));
                return Err(Error::InvalidInput(format!(
                    "the state directory {} is too deep: the box's socket {} would exceed \
                     the {}-byte limit of Unix socket paths; use a shorter --home",
                    shared.layout.home().display(),
                    socket.display(),
                    crate::layout::MAX_SOCKET_PATH_LEN
                )));
            }
            let made = std::fs::create_dir_all(paths.dir())
                .map_err(|e| Error::io(format!("creating {}", paths.dir().display()), e))
                .and_then(|()| disk::create_box_disk(&paths.disk(), record.options.disk_size_mib));
            if let Err(e) = made {
                let _ = shared.db(|db| db.remove_box(&id));
                let _ = std::fs::remove_dir_all(paths.dir());
                return Err(e);
            }
            Ok(record)
        })
        .await
        .map_err(|e| Error::Host(format!("creating a box: {e}")))??;
        Ok(LiteBox::new(self.shared.clone(), record))
    }

    /// The box with this id, unique id prefix or name.
    pub async fn get(&self, key: &str) -> Result<LiteBox> {
        let record = self.shared.record(key)?;
        Ok(LiteBox::new(self.shared.clone(), record))
    }

    /// Every box, oldest first, with truthful states.
    pub async fn list(&self) -> Result<Vec<BoxInfo>> {
        let records = self.shared.db(|db| db.list_boxes())?;
        records
            .into_iter()
            .map(|r| self.shared.reconcile(r))
            .collect()
    }

    /// Removes a box and its files; a running box only with `force` (it is killed).
    pub async fn remove(&self, key: &str, force: bool) -> Result<()> {
        let litebox = self.get(key).await?;
        litebox.remove(force).await
    }

    /// Removes image `name` (and its base disk, unless another name keeps the same image);
    /// refused while boxes use it, naming them.
    pub fn remove_image(&self, name: &str) -> Result<oci_layers::GcReport> {
        let store = &self.shared.store;
        let image = store.get(name)?;
        let digest = image.record.manifest_digest.clone();
        let _disk_lock = disk::lock_base_disk(&self.shared.layout, &digest)?;
        // Another name for the same manifest keeps its boxes (and base disk) working.
        let shared = store
            .list()?
            .iter()
            .any(|other| other.name != image.record.name && other.manifest_digest == digest);
        if !shared {
            let users = self.shared.db(|db| {
                let ids = db.boxes_using_image(&digest.to_string())?;
                Ok(ids
                    .iter()
                    .map(|id| db.get_box(id).map_or_else(|_| id.clone(), |b| b.name))
                    .collect::<Vec<_>>())
            })?;
            if !users.is_empty() {
                let (count, them) = match users.len() {
                    1 => ("1 box".to_string(), "it"),
                    n => (format!("{n} boxes"), "them"),
                };
                return Err(Error::InvalidInput(format!(
                    "image {name} is used by {count}: {}; remove {them} first (`boxlite rm`)",
                    users.join(", ")
                )));
            }
        }
        let report = store.remove(name)?;
        if !shared {
            self.shared
                .db(|db| disk::remove_base_disk_locked(&self.shared.layout, db, &digest))?;
        }
        Ok(report)
    }

    /// The host, its engines and the guest artefacts.
    pub fn host_info(&self) -> HostInfo {
        let kvm = host::probe_kvm();
        let qemu = self.shared.qemu();
        let vmm = self.shared.vmm();
        let engines = vec![
            EngineInfo {
                name: "kvm".into(),
                available: kvm.is_hardware() && vmm.is_some(),
                detail: match &vmm {
                    Some(path) => format!("{}: {}", path.display(), kvm.describe()),
                    None => format!(
                        "boxlite-vmm not found (set BOXLITE_VMM); {}",
                        kvm.describe()
                    ),
                },
            },
            EngineInfo {
                name: "qemu".into(),
                available: qemu.is_some(),
                detail: match &qemu {
                    Some(path) if kvm.is_hardware() => {
                        format!("{} with KVM acceleration", path.display())
                    }
                    Some(path) => format!(
                        "{} with TCG (software emulation: no usable hardware KVM)",
                        path.display()
                    ),
                    None => "qemu-system-x86_64 not found (apt-get install qemu-system-x86)".into(),
                },
            },
        ];
        HostInfo {
            home: self.home().to_path_buf(),
            kvm_hardware: kvm.is_hardware(),
            kvm: kvm.describe(),
            engines,
            auto_engine: match engine::resolve(EngineKind::Auto, &kvm, &self.shared.programs()) {
                Ok(EngineKind::Kvm) => "kvm (boxlite-vmm)".into(),
                Ok(_) if kvm.is_hardware() => "qemu (kvm)".into(),
                Ok(_) => "qemu (tcg)".into(),
                Err(e) => format!("none: {e}"),
            },
            kernel: self.shared.kernel().ok(),
            initramfs: self.shared.initramfs().ok(),
            supervisor: self.shared.supervisor().ok().map(|s| s.program),
            memory_mib: host::memory_total_mib().ok(),
        }
    }
}

/// A fresh box id: 64 hex digits from the kernel's random source.
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        filled +=
            rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty())
                .map_err(|e| Error::io("reading random bytes for a box id", e.into()))?;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
