//! The jail a box's VM process runs in, checked from outside through /proc on a real box
//! (QEMU; TCG without hardware KVM): no environment, no new privileges, a seccomp filter,
//! its own user (as root), only its own descriptors, its own namespaces, the protections
//! recorded for `inspect` and reported by `host_info`, and a box that still works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use boxlite::BoxCommand;
use support::Fixture;

/// Put in the caller's environment: the supervisor inherits it, the VM process must not.
const SECRET: (&str, &str) = ("BOXLITE_JAIL_TEST_SECRET", "correct-horse-battery-staple");

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .unwrap()
        .trim()
        .to_string()
}

fn ns(pid: u32, name: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}")).unwrap()
}

#[test]
fn the_vm_process_runs_jailed_and_the_box_works() {
    // SAFETY: set before this test starts any thread of its own (the async runtime is made
    // after), and no other test of this binary reads the environment.
    unsafe { std::env::set_var(SECRET.0, SECRET.1) };
    let Some(fx) = Fixture::new() else { return };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(jailed(fx));
}

async fn jailed(fx: Fixture) {
    let rt = fx.runtime();
    let bx = rt.create(support::named("jailed")).await.unwrap();
    bx.start().await.unwrap();
    let info = bx.info().await.unwrap();
    let vm = info.vm_pid.unwrap();
    let supervisor = info.supervisor_pid.unwrap();

    // The environment: the supervisor has the secret, the VM process has nothing at all.
    let environ = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let secret = format!("{}={}", SECRET.0, SECRET.1);
    let has = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    assert!(
        has(&environ(supervisor)),
        "the test's secret reached the supervisor"
    );
    assert!(
        environ(vm).is_empty(),
        "{:?}",
        String::from_utf8_lossy(&environ(vm))
    );

    // No new privileges, a seccomp filter (QEMU's -sandbox), and not root.
    assert_eq!(status_field(vm, "NoNewPrivs"), "1");
    assert_eq!(status_field(vm, "Seccomp"), "2");
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        for id in status_field(vm, "Uid").split_whitespace() {
            assert_ne!(id, "0", "the VM process runs as root");
        }
        for id in status_field(vm, "Gid").split_whitespace() {
            assert_ne!(id, "0", "the VM process runs in group root");
        }
    }

    // Its own mount, network, IPC and UTS namespaces.
    // Its own PID namespace too: the engine is PID 1 there (the process the supervisor
    // spawned waits between, in the supervisor's).
    assert_eq!(
        status_field(vm, "NSpid").split_whitespace().last(),
        Some("1")
    );
    for name in ["mnt", "net", "ipc", "uts", "pid"] {
        assert_ne!(ns(vm, name), ns(supervisor, name), "{name} namespace");
    }

    // Descriptors: the box's own files, devices, sockets, pipes and anonymous inodes only;
    // nothing of the supervisor's (state.db, its lock, box.sock).
    let home = fx.home();
    let box_dir = home.join("boxes").join(&info.id[..16]);
    let disks = home.join("disks");
    let targets: BTreeSet<String> = std::fs::read_dir(format!("/proc/{vm}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    for target in &targets {
        let path = std::path::Path::new(target);
        let fine = !target.starts_with('/')
            || target.starts_with("/dev/")
            || path.starts_with(&disks)
            || path == fx.kernel
            || path == fx.initramfs
            || [
                box_dir.clone(),
                box_dir.join("disk.ext4"),
                box_dir.join("console.log"),
                box_dir.join("vm.log"),
            ]
            .iter()
            .any(|p| p == path);
        assert!(fine, "the VM process holds {target}: {targets:#?}");
        for theirs in ["state.db", "supervisor.lock", "box.sock", "supervisor.log"] {
            assert!(!target.ends_with(theirs), "{target}");
        }
    }

    // The record `inspect` shows, and what the host reports.
    let protections = info
        .protections
        .expect("the supervisor recorded the protections");
    eprintln!("{}", serde_json::to_string_pretty(&protections).unwrap());
    for name in [
        "environment",
        "descriptors",
        "no-new-privs",
        "rlimits",
        "namespaces",
        "seccomp",
    ] {
        let p = protections.get(name).unwrap();
        assert!(p.active, "{name}: {}", p.reason);
    }
    let host = rt.host_info();
    for p in protections.iter() {
        if p.name != "seccomp" && p.name != "identity" {
            assert_eq!(
                host.protections.is_active(&p.name),
                p.active,
                "{}: box says {}, host says {:?}",
                p.name,
                p.reason,
                host.protections.get(&p.name)
            );
        }
    }

    // And the box works: commands run, the disk takes writes and keeps them.
    let out = bx
        .exec(BoxCommand::new("sh").args(["-c", "echo hi > /srv/f && sync && cat /srv/f"]))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{out:?}");
    bx.stop().await.unwrap();
    bx.start().await.unwrap();
    let out = bx
        .exec(BoxCommand::new("cat").arg("/srv/f"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"hi\n");
    bx.stop().await.unwrap();
}
