//! Host tools the tasks need, installed from Debian's archive when missing (as root).

use std::process::Command;

use anyhow::{Result, bail};

use crate::sh;

/// Makes sure each `(command, Debian package)` is available, installing missing packages.
pub fn ensure(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    install(&missing)
}

/// Installs Debian packages that provide no command [`ensure`] could look for.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map_or(true, |o| {
                    !String::from_utf8_lossy(&o.stdout).contains("install ok installed")
                })
        })
        .collect();
    install(&missing)
}

/// Installs `missing` Debian packages with apt-get (as root), or says how to.
fn install(missing: &[&str]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        bail!(
            "missing packages; install them with: sudo apt-get install {}",
            missing.join(" ")
        );
    }
    eprintln!("installing {} from the Debian archive", missing.join(" "));
    // No package may start its service: docker-registry's listens on every interface.
    let _no_services = NoServices::install()?;
    sh::run(Command::new("apt-get").args(["update", "-qq"]))?;
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Debian's `policy-rc.d` hook answering 101 ("action forbidden") while alive, so that
/// installing a package starts none of its services; removed on drop unless it was there.
struct NoServices {
    created: bool,
}

impl NoServices {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn install() -> Result<NoServices> {
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::Path::new(Self::PATH);
        if path.exists() {
            return Ok(NoServices { created: false });
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# cargo xtask: no services while installing\nexit 101\n",
        )?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoServices { created: true })
    }
}

impl Drop for NoServices {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(Self::PATH);
        }
    }
}

/// Where system programs live even when `PATH` leaves them out: Debian's `PATH` for users
/// other than root has no sbin directories, where e2fsprogs, xfsprogs and mount put theirs,
/// and asking to install a package that is installed would only mislead.
const SYSTEM_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

fn on_path(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(std::path::PathBuf::from))
        .any(|dir| dir.join(cmd).is_file())
}
