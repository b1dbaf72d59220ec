//! The one place the library reads the process environment: [`RuntimeOptions::from_env`]
//! maps `BOXLITE_*` (and the XDG and `HOME` conventions) to options, and programs are looked
//! up in `PATH` as `std::process::Command` would. Everything else takes its settings from
//! [`RuntimeOptions`] alone.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::options::RuntimeOptions;

/// The state directory, when `BOXLITE_HOME` does not say (`$XDG_DATA_HOME/boxlite`, else
/// `~/.local/share/boxlite`).
pub fn default_home() -> PathBuf {
    data_home().join("boxlite")
}

/// The per-user directory where `cargo xtask kernel` and `cargo xtask guest` leave the guest
/// kernel and initramfs, searched after `<home>/guest/` by runtimes made with
/// [`RuntimeOptions::from_env`]: outside any one state directory, so every `--home` finds
/// them (`$XDG_DATA_HOME/boxlite-guest`, else `~/.local/share/boxlite-guest`).
pub fn user_guest_dir() -> PathBuf {
    data_home().join("boxlite-guest")
}

/// `$XDG_DATA_HOME` when set to an absolute path (the XDG rule), else `~/.local/share`.
fn data_home() -> PathBuf {
    if let Some(data) = var_path("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return data;
    }
    let home = var_path("HOME").unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/share")
}

/// A variable's value as a path; unset and empty are both `None`.
fn var_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `PATH`, where the host's programs (QEMU, `mkfs.ext4`, the supervisor) are found.
pub(crate) fn program_path() -> Option<OsString> {
    std::env::var_os("PATH")
}

impl RuntimeOptions {
    /// Options as the environment gives them: `BOXLITE_HOME` (else [`default_home`]),
    /// `BOXLITE_KERNEL`, `BOXLITE_INITRAMFS`, `BOXLITE_SUPERVISOR`, `BOXLITE_QEMU`,
    /// `BOXLITE_VMM`, `BOXLITE_VIRTIOFSD`, `BOXLITE_BOOT_TIMEOUT` (seconds), `BOXLITE_FORCE_KVM=1` and
    /// `BOXLITE_JAIL=off` (measurement and debugging only); the guest
    /// files are also searched in [`user_guest_dir`].
    pub fn from_env() -> RuntimeOptions {
        let mut options =
            RuntimeOptions::new(var_path("BOXLITE_HOME").unwrap_or_else(default_home));
        options.kernel = var_path("BOXLITE_KERNEL");
        options.initramfs = var_path("BOXLITE_INITRAMFS");
        options.guest_dirs.push(user_guest_dir());
        options.supervisor = var_path("BOXLITE_SUPERVISOR").map(crate::SupervisorCommand::new);
        options.qemu = var_path("BOXLITE_QEMU");
        options.vmm = var_path("BOXLITE_VMM");
        options.virtiofsd = var_path("BOXLITE_VIRTIOFSD");
        if let Some(secs) = std::env::var("BOXLITE_BOOT_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            options.boot_timeout = std::time::Duration::from_secs(secs);
        }
        options.force_kvm = std::env::var_os("BOXLITE_FORCE_KVM").is_some_and(|v| v == "1");
        // Only an explicit "off" turns the jail off (for benchmarks and engine debugging).
        options.jail = std::env::var_os("BOXLITE_JAIL").is_none_or(|v| v != "off");
        options.registry = registry_from_env();
        options.dns_upstream = dns_from_env();
        options
    }
}

/// The most bytes of `/etc/resolv.conf` read: real ones are a few lines.
const MAX_RESOLV_CONF_BYTES: u64 = 64 * 1024;

/// The DNS servers boxes forward to: `BOXLITE_DNS` (comma-separated `IP` or `IP:PORT`),
/// else the host's `/etc/resolv.conf` nameservers.
pub fn dns_from_env() -> Vec<std::net::SocketAddr> {
    if let Ok(list) = std::env::var("BOXLITE_DNS") {
        return list
            .split(',')
            .filter_map(|s| dns_server(s.trim()))
            .collect();
    }
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open("/etc/resolv.conf")
        .and_then(|f| f.take(MAX_RESOLV_CONF_BYTES).read_to_string(&mut text));
    match read {
        Ok(_) => nameservers(&text),
        Err(_) => Vec::new(),
    }
}

/// The `nameserver` lines of a resolv.conf, on port 53 (at most 3, as glibc reads).
fn nameservers(text: &str) -> Vec<std::net::SocketAddr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .take(3)
        .collect()
}

/// `IP` (port 53) or `IP:PORT`.
fn dns_server(s: &str) -> Option<std::net::SocketAddr> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
}

/// How registries are reached, as docker, podman and curl users set it: `DOCKER_CONFIG`
/// (else `~/.docker`), `REGISTRY_AUTH_FILE` and `XDG_RUNTIME_DIR` (podman's `auth.json`),
/// `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` (either case), and boxlite's own
/// `BOXLITE_INSECURE_REGISTRIES` (comma-separated) and `BOXLITE_REGISTRY_MIRROR`.
/// CA files are options, not environment: the CLI reads `--registry-ca`.
pub fn registry_from_env() -> crate::RegistryOptions {
    let mut options = crate::RegistryOptions::default();
    let home = var_path("HOME").unwrap_or_else(|| PathBuf::from("/root"));
    let docker_dir = var_path("DOCKER_CONFIG").unwrap_or_else(|| home.join(".docker"));
    options.credentials.docker_config = Some(docker_dir.join("config.json"));
    let mut podman = Vec::new();
    podman.extend(var_path("REGISTRY_AUTH_FILE"));
    podman.extend(var_path("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    podman.push(home.join(".config/containers/auth.json"));
    options.credentials.podman_auth = podman;
    let either = |upper: &str| {
        std::env::var(upper)
            .ok()
            .or_else(|| std::env::var(upper.to_ascii_lowercase()).ok())
            .filter(|v| !v.is_empty())
    };
    options.proxy.https = either("HTTPS_PROXY");
    options.proxy.http = either("HTTP_PROXY");
    options.proxy.no_proxy = either("NO_PROXY");
    if let Ok(list) = std::env::var("BOXLITE_INSECURE_REGISTRIES") {
        options.insecure_registries = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    options.docker_io_mirror = std::env::var("BOXLITE_REGISTRY_MIRROR")
        .ok()
        .filter(|v| !v.is_empty());
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read_as_glibc_does() {
        let text = "# comment\nsearch lan\nnameserver 10.1.1.1\nnameserver ::1\n\
                    nameserver bogus\nnameserver 9.9.9.9\nnameserver 8.8.8.8\n";
        let got: Vec<String> = nameservers(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.1.1.1:53", "[::1]:53", "9.9.9.9:53"]);
        assert_eq!(
            dns_server("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(dns_server("1.1.1.1"), Some("1.1.1.1:53".parse().unwrap()));
        assert_eq!(dns_server("x"), None);
    }
}
