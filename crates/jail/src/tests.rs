//! Real children in real jails, inspected through /proc.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};

use super::*;

/// What every test program needs to run under Landlock: the dynamic loader, libraries and
/// coreutils.
fn allow_system(jail: &mut Jail) {
    for dir in ["/usr", "/lib", "/lib64", "/bin"] {
        jail.allow(dir, Access::Execute);
    }
    jail.allow("/etc/ld.so.cache", Access::Read);
}

/// Kills the child on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeping(jail: Jail) -> (Running, Jailed) {
    let mut command = Command::new("/bin/sleep");
    command.arg("30");
    let jailed = jail.apply(&mut command).unwrap();
    let child = command.spawn().unwrap();
    // In a PID namespace of its own, sleep is the child's child.
    let pid = crate::program_pid(child.id());
    // Until the child has exec'd, /proc shows the parent's copy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n" {
        assert!(std::time::Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (Running(child), jailed)
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap()
        .trim()
        .to_string()
}

fn fds(pid: u32) -> BTreeSet<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn the_environment_is_only_what_is_passed() {
    let mut jail = Jail::new();
    jail.env("PASSED", "yes");
    let mut command = Command::new("/usr/bin/env");
    command.env("JAIL_TEST_SECRET", "hunter2");
    let jailed = jail.apply(&mut command).unwrap();
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PASSED=yes\n");
    assert!(jailed.protections().is_active(ENVIRONMENT));
}

#[test]
fn only_passed_descriptors_survive_and_no_new_privs_and_limits_hold() {
    // A descriptor without close-on-exec, as a careless library would leave one.
    // SAFETY: open(2) on a NUL-terminated path; the result is owned below.
    let leaky = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(leaky > 2);
    // SAFETY: `leaky` was just opened and nothing else owns it.
    let leaky = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(leaky) };
    let passed = std::fs::File::open("/dev/zero").unwrap();
    let mut jail = Jail::new();
    let number = jail.pass_fd(passed.into());
    jail.rlimit(Resource::Core, 0).rlimit(Resource::NoFile, 64);
    let (child, jailed) = sleeping(jail);
    let pid = crate::program_pid(child.0.id());
    let open = fds(pid);
    assert_eq!(open, BTreeSet::from([0, 1, 2, number]), "{open:?}");
    assert!(!open.contains(&leaky.as_raw_fd()));
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(line("Max core file size").contains("0 0"), "{limits}");
    assert!(line("Max open files").contains("64 64"), "{limits}");
    let p = jailed.protections();
    assert!(p.is_active(DESCRIPTORS) && p.is_active(NO_NEW_PRIVS) && p.is_active(RLIMITS));
    assert!(!p.is_active(PID_NAMESPACE));
}

#[test]
fn namespaces_are_new_where_the_host_allows() {
    let mut jail = Jail::new();
    jail.namespaces();
    let (child, jailed) = sleeping(jail);
    let pid = crate::program_pid(child.0.id());
    let ns = |pid: &str, name: &str| std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap();
    let active = jailed.protections().is_active(NAMESPACES);
    assert_eq!(active, probe::namespaces().is_ok());
    for name in ["mnt", "net", "ipc", "uts", "cgroup", "pid"] {
        let differs = ns(&pid.to_string(), name) != ns("self", name);
        assert_eq!(differs, active, "{name}: {:?}", jailed.protections());
    }
    if active {
        // The new network namespace has only a loopback, and it is down.
        let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
        let interfaces: Vec<&str> = dev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .collect();
        assert_eq!(
            interfaces.iter().map(|i| i.trim()).collect::<Vec<_>>(),
            ["lo"]
        );
    }
}

#[test]
fn as_root_the_child_runs_as_the_identity_and_owns_its_grants() {
    if !probe::is_root() {
        let jail = {
            let mut j = Jail::new();
            j.identity(Identity {
                uid: 4_000_000,
                gid: 4_000_000,
                groups: vec![],
            });
            j
        };
        let (_child, jailed) = sleeping(jail);
        assert!(!jailed.protections().is_active(IDENTITY));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk");
    let shared = dir.path().join("base");
    std::fs::write(&shared, b"").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut jail = Jail::new();
    jail.identity(Identity {
        uid: 4_000_001,
        gid: 4_000_002,
        groups: vec![4_000_003],
    })
    .grant(&file, Grant::File)
    .grant(dir.path(), Grant::SocketDir)
    .grant(&shared, Grant::ReadableBy(4_000_003))
    .rlimit(Resource::NProc, 16);
    let (child, jailed) = sleeping(jail);
    let pid = crate::program_pid(child.0.id());
    assert!(
        status_field(pid, "Uid")
            .split_whitespace()
            .all(|u| u == "4000001")
    );
    assert!(
        status_field(pid, "Gid")
            .split_whitespace()
            .all(|g| g == "4000002")
    );
    assert_eq!(status_field(pid, "Groups"), "4000003");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4_000_001, 4_000_002));
    let meta = std::fs::metadata(dir.path()).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o1030),
        (0, 4_000_002, 0o1030)
    );
    let meta = std::fs::metadata(&shared).unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o777), (4_000_003, 0o640));
    let p = jailed.protections();
    assert!(p.is_active(IDENTITY), "{p:?}");
    assert!(p.get(RLIMITS).unwrap().reason.contains("nproc 16"), "{p:?}");
}

#[test]
fn landlock_allows_only_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    let denied = dir.path().join("denied");
    std::fs::write(&allowed, "in\n").unwrap();
    std::fs::write(&denied, "out\n").unwrap();
    let mut jail = Jail::new();
    allow_system(&mut jail);
    jail.allow(&allowed, Access::Read);
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!(
            "cat {}; cat {} 2>/dev/null || echo denied; echo x > {} || echo ro",
            allowed.display(),
            denied.display(),
            allowed.display()
        ))
        .stderr(Stdio::null());
    let jailed = jail.apply(&mut command).unwrap();
    let out = command.output().unwrap();
    if landlock_abi() == 0 {
        assert!(!jailed.protections().is_active(LANDLOCK));
        return;
    }
    assert!(jailed.protections().is_active(LANDLOCK), "{jailed:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in\ndenied\nro\n",
        "{out:?}"
    );
}

#[test]
fn a_step_that_fails_fails_the_spawn_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    // Landlock without the program's own files: execve itself is denied.
    let mut jail = Jail::new();
    jail.allow(dir.path(), Access::Read);
    let mut command = Command::new("/bin/true");
    let jailed = jail.apply(&mut command).unwrap();
    if !jailed.protections().is_active(LANDLOCK) {
        return;
    }
    let err = command.spawn().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
}

#[test]
fn the_host_report_has_every_protection_with_a_reason() {
    let host = host();
    for name in [
        ENVIRONMENT,
        DESCRIPTORS,
        NO_NEW_PRIVS,
        RLIMITS,
        IDENTITY,
        NAMESPACES,
        PID_NAMESPACE,
        LANDLOCK,
        CGROUP,
        SECCOMP,
    ] {
        let p = host.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(!p.reason.is_empty(), "{name}");
    }
    assert_eq!(host.is_active(LANDLOCK), landlock_abi() > 0);
}

#[test]
fn the_parent_death_signal_survives_the_identity_change() {
    // The child's parent is this test process, which lives on: the check passes and the
    // child runs; its signal is set (visible as a kill when its spawning thread ends).
    let mut jail = Jail::new();
    jail.die_with_parent(libc::SIGKILL);
    if probe::is_root() {
        jail.identity(Identity {
            uid: 4_000_004,
            gid: 4_000_004,
            groups: vec![],
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let spawner = std::thread::spawn(move || {
        let (child, _) = sleeping(jail);
        // Our own child (the process between, when there is a PID namespace).
        let pid = child.0.id();
        std::mem::forget(child);
        tx.send(pid).unwrap();
    });
    let pid = rx.recv().unwrap();
    spawner.join().unwrap();
    // The spawning thread ended: the kernel kills the child, which stays a zombie of ours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if rc == pid as libc::pid_t {
            let status = std::process::ExitStatus::from_raw(status);
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child outlived its spawner"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
