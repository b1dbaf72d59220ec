//! Engines: the virtual machine monitors that run a box, each an external process the
//! supervisor owns.
//!
//! Every engine boots the same kernel and initramfs with the same devices ([`VmSpec`]), so
//! everything above the engine is identical. An engine is one file here: how to find its
//! program, whether it can run on this host and why not, how it describes itself, and how a
//! [`VmSpec`] becomes its command line. The runtime resolves the box's [`EngineKind`] to one
//! [`ResolvedEngine`] (plain data) and hands that to the supervisor.
//!
//! Adding an engine: a file with a unit struct implementing [`Engine`], a line in
//! [`ENGINES`], and its variant of [`EngineKind`]. Adding a device kind: a variant of
//! [`Device`] and one arm in each engine's `command`.

mod kvm;
mod qemu;
mod spec;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

pub use qemu::SANDBOX as QEMU_SANDBOX;
pub use spec::{Device, GuestNet, VmSpec};

use crate::error::{Error, Result};
use crate::host::KvmSupport;
use crate::options::{EngineKind, RuntimeOptions};

/// Every engine of this build, in the order `auto` prefers them.
static ENGINES: &[&dyn Engine] = &[&kvm::Kvm, &qemu::Qemu];

/// One virtual machine monitor.
pub trait Engine: Sync {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Its name, as `--engine` takes it.
    fn name(&self) -> &'static str;

    /// The most vCPUs it runs a box with.
    fn max_cpus(&self) -> u32;

    /// The most virtio devices (disks, the agent's channel, the network card, file systems)
    /// it gives one box.
    fn max_devices(&self) -> usize;

    /// Its program, where the options name it or where it is found.
    fn locate(&self, options: &RuntimeOptions) -> Option<PathBuf>;

    /// Whether it can run here with `program` (`None`: not found); the error says why not.
    /// `auto` is true when the caller left the choice to the runtime: an engine that would
    /// only run because it was insisted on (`force_kvm`) then declines.
    fn check(&self, host: &Host, program: Option<&Path>, auto: bool) -> Result<()>;

    /// A short description of a resolved engine for `info` and `inspect`, e.g. `qemu (tcg)`.
    fn describe(&self, engine: &ResolvedEngine) -> String;

    /// What `info` says of it here: its program and what it will run with, or why not.
    fn detail(&self, host: &Host, program: Option<&Path>) -> String;

    /// The command that boots `spec` and exits when the guest powers off.
    fn command(&self, engine: &ResolvedEngine, spec: &VmSpec) -> Command;
}

/// What the engines need to know of the host.
#[derive(Debug, Clone)]
pub struct Host {
    /// What /dev/kvm is.
    pub kvm: KvmSupport,
    /// Whether the caller lets the kvm engine run without hardware KVM.
    pub force_kvm: bool,
}

/// An engine chosen for a box on this host, with its program: what the supervisor runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedEngine {
    /// Which engine.
    pub kind: EngineKind,
    /// Its program.
    #[serde(with = "crate::pathbytes")]
    pub program: PathBuf,
    /// Whether hardware KVM accelerates it.
    pub hardware_kvm: bool,
    /// Whether it runs without hardware KVM only because the caller insisted.
    pub forced: bool,
}

impl ResolvedEngine {
    /// The engine's implementation.
    fn engine(&self) -> &'static dyn Engine {
        by_kind(self.kind).unwrap_or(ENGINES[ENGINES.len() - 1])
    }

    /// A short description, e.g. `qemu (tcg)`.
    pub fn describe(&self) -> String {
        self.engine().describe(self)
    }

    /// The most vCPUs it runs a box with.
    pub fn max_cpus(&self) -> u32 {
        self.engine().max_cpus()
    }

    /// The most virtio devices it gives one box.
    pub fn max_devices(&self) -> usize {
        self.engine().max_devices()
    }

    /// The engine's name.
    pub fn name(&self) -> &'static str {
        self.engine().name()
    }

    /// The command that boots `spec`.
    pub fn command(&self, spec: &VmSpec) -> Command {
        self.engine().command(self, spec)
    }
}

/// Each engine's program, where found.
#[derive(Debug, Clone, Default)]
pub struct Programs(Vec<(EngineKind, PathBuf)>);

impl Programs {
    /// Finds every engine's program as `options` say.
    pub fn locate(options: &RuntimeOptions) -> Programs {
        Programs(
            ENGINES
                .iter()
                .filter_map(|e| e.locate(options).map(|p| (e.kind(), p)))
                .collect(),
        )
    }

    /// The program of engine `kind`.
    pub fn get(&self, kind: EngineKind) -> Option<&Path> {
        self.0
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p.as_path())
    }

    /// Records `program` as engine `kind`'s (for tests and callers that know better).
    pub fn with(mut self, kind: EngineKind, program: impl Into<PathBuf>) -> Programs {
        self.0.retain(|(k, _)| *k != kind);
        self.0.push((kind, program.into()));
        self
    }
}

/// The engine of this build called `kind`.
fn by_kind(kind: EngineKind) -> Option<&'static dyn Engine> {
    ENGINES.iter().copied().find(|e| e.kind() == kind)
}

/// The engine whose name is `name`.
pub fn by_name(name: &str) -> Option<EngineKind> {
    ENGINES.iter().find(|e| e.name() == name).map(|e| e.kind())
}

/// The engine names of this build, for messages.
pub fn names() -> Vec<&'static str> {
    ENGINES.iter().map(|e| e.name()).collect()
}

/// The name of engine `kind`.
pub fn name(kind: EngineKind) -> &'static str {
    by_kind(kind).map_or("auto", |e| e.name())
}

/// Which engine `kind` means on `host` with `programs`, or why none can run: `auto` is the
/// first engine of [`ENGINES`] that can run (the last one's refusal if none can).
pub fn resolve(kind: EngineKind, host: &Host, programs: &Programs) -> Result<ResolvedEngine> {
    let auto = kind == EngineKind::Auto;
    let candidates: Vec<&dyn Engine> = match by_kind(kind) {
        Some(engine) => vec![engine],
        None => ENGINES.to_vec(),
    };
    let mut refusal = Error::InvalidInput(format!("no engine called {kind}"));
    for engine in candidates {
        let program = programs.get(engine.kind());
        match (engine.check(host, program, auto), program) {
            (Ok(()), Some(program)) => {
                return Ok(ResolvedEngine {
                    kind: engine.kind(),
                    program: program.to_path_buf(),
                    hardware_kvm: host.kvm.is_hardware(),
                    forced: !host.kvm.is_hardware() && host.force_kvm,
                });
            }
            (Ok(()), None) => {}
            (Err(e), _) => refusal = e,
        }
    }
    Err(refusal)
}

/// What `info` reports of one engine.
#[derive(Debug, Clone)]
pub struct Assessment {
    /// Its name.
    pub name: &'static str,
    /// Whether it can run boxes here.
    pub available: bool,
    /// Its program and what it runs with, or why it cannot run.
    pub detail: String,
}

/// Every engine's availability here, in [`ENGINES`] order.
pub fn assess(host: &Host, programs: &Programs) -> Vec<Assessment> {
    ENGINES
        .iter()
        .map(|e| {
            let program = programs.get(e.kind());
            Assessment {
                name: e.name(),
                available: program.is_some() && e.check(host, program, true).is_ok(),
                detail: e.detail(host, program),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(kvm: KvmSupport) -> Host {
        Host {
            kvm,
            force_kvm: false,
        }
    }

    #[test]
    fn auto_picks_kvm_only_on_hardware_kvm_with_the_vmm() {
        let both = Programs::default()
            .with(EngineKind::Qemu, "/q")
            .with(EngineKind::Kvm, "/v");
        let qemu_only = Programs::default().with(EngineKind::Qemu, "/q");
        let hw = host(KvmSupport::Hardware);
        let pvm = host(KvmSupport::Paravirtual);
        let kind = |k, h, p| resolve(k, h, p).unwrap().kind;
        assert_eq!(kind(EngineKind::Auto, &hw, &both), EngineKind::Kvm);
        assert_eq!(kind(EngineKind::Auto, &hw, &qemu_only), EngineKind::Qemu);
        assert_eq!(kind(EngineKind::Auto, &pvm, &both), EngineKind::Qemu);
        assert_eq!(kind(EngineKind::Qemu, &hw, &both), EngineKind::Qemu);
        let err = resolve(EngineKind::Kvm, &pvm, &both).unwrap_err();
        assert!(
            matches!(&err, Error::EngineUnavailable { engine, .. } if engine == "kvm"),
            "{err}"
        );
        assert!(err.to_string().contains("kvm_pvm"), "{err}");
        let forced = Host {
            kvm: KvmSupport::Paravirtual,
            force_kvm: true,
        };
        let engine = resolve(EngineKind::Kvm, &forced, &both).unwrap();
        assert!(engine.forced && engine.kind == EngineKind::Kvm);
        // Forcing is for an explicit choice: auto still takes QEMU.
        assert_eq!(kind(EngineKind::Auto, &forced, &both), EngineKind::Qemu);
        let err = resolve(EngineKind::Kvm, &hw, &qemu_only)
            .unwrap_err()
            .to_string();
        assert!(err.contains("boxlite-vmm"), "{err}");
        let none = Programs::default();
        let err = resolve(EngineKind::Auto, &pvm, &none).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
    }

    #[test]
    fn every_engine_is_listed_for_info_and_described() {
        let programs = Programs::default().with(EngineKind::Qemu, "/q");
        let info = assess(&host(KvmSupport::Paravirtual), &programs);
        let names: Vec<_> = info.iter().map(|a| a.name).collect();
        assert_eq!(names, names_in_order());
        assert!(info.iter().any(|a| a.name == "qemu" && a.available));
        assert!(info.iter().any(|a| a.name == "kvm" && !a.available));
        let tcg = resolve(EngineKind::Auto, &host(KvmSupport::Paravirtual), &programs).unwrap();
        assert_eq!(tcg.describe(), "qemu (tcg)");
        let hw = resolve(EngineKind::Qemu, &host(KvmSupport::Hardware), &programs).unwrap();
        assert_eq!(hw.describe(), "qemu (kvm)");
        assert_eq!(by_name("kvm"), Some(EngineKind::Kvm));
        assert_eq!(by_name("warp"), None);
    }

    fn names_in_order() -> Vec<&'static str> {
        names()
    }
}
