//! Whether this host's KVM can run a Linux guest.

use std::path::Path;

/// The advice printed wherever we refuse.
pub const USE_QEMU: &str = "use `--engine qemu` instead";

/// Why KVM cannot be used for Linux guests here, if it cannot.
///
/// `/dev/kvm` must open read-write; and the paravirtual `kvm_pvm` module (nested KVM without
/// hardware virtualization) runs simple guest code but stops a Linux guest within seconds
/// with "KVM internal error … emulation failure" on instructions such as `xsave` and
/// `cmpxchg16b`, so it counts as unusable.
pub fn kvm_unusable() -> Option<String> {
    kvm_unusable_at(Path::new("/dev/kvm"), Path::new("/sys/module/kvm_pvm"))
}

/// [`kvm_unusable`] with the paths given (tests).
pub fn kvm_unusable_at(dev: &Path, pvm_module: &Path) -> Option<String> {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Some(format!(
            "{} cannot be opened ({e}): hardware KVM is not available; {USE_QEMU}",
            dev.display()
        ));
    }
    if pvm_module.exists() {
        return Some(format!(
            "{} is the paravirtual kvm_pvm ({} exists), which cannot run a Linux guest (it dies \
             with a KVM emulation failure on xsave/cmpxchg16b); {USE_QEMU}, or force it with \
             --force-kvm / BOXLITE_FORCE_KVM=1 for experiments",
            dev.display(),
            pvm_module.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        let module = dir.path().join("kvm_pvm");
        assert!(
            kvm_unusable_at(&dev, &module)
                .unwrap()
                .contains("cannot be opened")
        );
        std::fs::write(&dev, b"").unwrap();
        assert_eq!(kvm_unusable_at(&dev, &module), None);
        std::fs::create_dir(&module).unwrap();
        let why = kvm_unusable_at(&dev, &module).unwrap();
        assert!(
            why.contains("kvm_pvm") && why.contains("--engine qemu"),
            "{why}"
        );
    }
}
