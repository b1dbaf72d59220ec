//! Crash consistency: a `create`, `start` or `rm` killed with SIGKILL at each of its steps
//! (the hidden `RuntimeOptions::abort_at` failpoints) leaves nothing the next open does not
//! report truthfully and clean up: no half box, no box `running` without a supervisor, no
//! orphan directory under `boxes/` or `trash/`, no VM nobody can see, and the name free
//! again. A killed `create` or `rm` runs in another process (this test binary again, in a
//! role); a killed start's victim is the supervisor, a process already.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use boxlite::{BoxState, ErrorKind, RemoveMode, Runtime};
use support::Fixture;

/// How long a killed supervisor's VM may take to die with it.
const DEATH_PATIENCE: Duration = Duration::from_secs(10);

/// Runs this binary again as a process that plays `role` on box `name` and kills itself at
/// step `at`; asserts that it did die of SIGKILL there.
fn killed_in_another_process(fx: &Fixture, role: &str, name: &str, at: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--nocapture", "--test-threads=1"])
        .env("BOXLITE_CRASH_ROLE", role)
        .env("BOXLITE_CRASH_HOME", fx.home())
        .env("BOXLITE_CRASH_BOX", name)
        .env("BOXLITE_CRASH_AT", at)
        .env("BOXLITE_CRASH_KERNEL", &fx.kernel)
        .env("BOXLITE_CRASH_INITRAMFS", &fx.initramfs)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "role {role} at {at} was not killed there ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Not a test of its own: the body of the other processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role() {
    let Ok(role) = std::env::var("BOXLITE_CRASH_ROLE") else {
        return;
    };
    let var = |name: &str| PathBuf::from(std::env::var_os(name).unwrap());
    let mut options = support::options_for(
        &var("BOXLITE_CRASH_HOME"),
        &var("BOXLITE_CRASH_KERNEL"),
        &var("BOXLITE_CRASH_INITRAMFS"),
    );
    options.abort_at = Some(std::env::var("BOXLITE_CRASH_AT").unwrap());
    let name = std::env::var("BOXLITE_CRASH_BOX").unwrap();
    let rt = Runtime::open(options).unwrap();
    match role.as_str() {
        "create" => drop(rt.create(support::named(&name)).await.unwrap()),
        "remove" => rt.remove(&name, RemoveMode::Kill).await.unwrap(),
        other => panic!("unknown role {other}"),
    }
}

/// The names of a directory's entries, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// Opens the runtime afresh (which recovers) and checks that it holds exactly the boxes
/// `names`, in no state but `states` allow, with one directory each and an empty trash.
async fn assert_truthful(fx: &Fixture, names: &[&str]) -> Runtime {
    let rt = fx.runtime();
    let listed = rt.list().await.unwrap();
    let mut listed_names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
    listed_names.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(listed_names, expected, "{listed:?}");
    for info in &listed {
        assert!(!info.state.is_active(), "{info:?}");
        let dir = fx.home().join("boxes").join(&info.id[..16]);
        assert!(dir.join("disk.ext4").is_file(), "{info:?} has no disk");
    }
    let dirs = entries(&fx.home().join("boxes"));
    assert_eq!(dirs.len(), names.len(), "box directories: {dirs:?}");
    let trash = entries(&fx.home().join("trash"));
    assert!(trash.is_empty(), "left in the trash: {trash:?}");
    rt
}

/// Whether the host can run a box's engine here (create refuses otherwise).
fn engine_available(rt: &Runtime) -> bool {
    let host = rt.host_info();
    let available = host.engines.iter().any(|e| e.available);
    if !available {
        eprintln!("skipped: no engine can run here: {:?}", host.engines);
    }
    available
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_killed_at_any_step_leaves_no_half_box() {
    let fx = Fixture::image_only();
    if !engine_available(&fx.runtime()) {
        return;
    }
    for at in ["create.dir", "create.row", "create.disk"] {
        killed_in_another_process(&fx, "create", "half", at);
        let rt = assert_truthful(&fx, &[]).await;
        let err = rt.get("half").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{at}: {err}");
    }
    // The name is free, and a box made with it is whole.
    let rt = fx.runtime();
    rt.create(support::named("half")).await.unwrap();
    let rt = assert_truthful(&fx, &["half"]).await;
    assert_eq!(
        rt.get("half").await.unwrap().info().await.unwrap().state,
        BoxState::Created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_killed_holding_a_name_gives_it_up_to_a_runtime_opened_before() {
    let fx = Fixture::image_only();
    let rt = fx.runtime();
    if !engine_available(&rt) {
        return;
    }
    // `rt` was opened before the crash, so only the create itself can see the dead
    // creator's row holds the name.
    killed_in_another_process(&fx, "create", "taken", "create.row");
    rt.create(support::named("taken")).await.unwrap();
    assert_truthful(&fx, &["taken"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rm_killed_at_any_step_leaves_no_orphan_files() {
    let fx = Fixture::image_only();
    if !engine_available(&fx.runtime()) {
        return;
    }
    for at in ["rm.row", "rm.trashed", "rm.partial"] {
        let rt = fx.runtime();
        rt.create(support::named("doomed")).await.unwrap();
        rt.create(support::named("bystander")).await.unwrap();
        killed_in_another_process(&fx, "remove", "doomed", at);
        let rt = assert_truthful(&fx, &["bystander"]).await;
        let err = rt.get("doomed").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{at}: {err}");
        rt.remove("bystander", RemoveMode::IfStopped).await.unwrap();
    }
    // The name is free again.
    fx.runtime().create(support::named("doomed")).await.unwrap();
    assert_truthful(&fx, &["doomed"]).await;
}

/// The processes whose command line names `home` (a VM names its disks there).
fn processes_using(home: &Path) -> Vec<String> {
    let home = home.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&home) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// Waits for every process using `home` to end; fails naming those that do not.
async fn assert_no_process_uses(home: &Path) {
    let deadline = Instant::now() + DEATH_PATIENCE;
    loop {
        let left = processes_using(home);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes outlived their box: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_killed_at_any_step_of_a_start_leaves_a_crashed_box() {
    let Some(fx) = Fixture::new() else { return };
    for at in ["start.starting", "start.vm", "start.running"] {
        let mut options = fx.options();
        options.abort_at = Some(at.into());
        let doomed = Runtime::open(options).unwrap();
        let bx = doomed.create(support::named("crashy")).await.unwrap();
        let err = bx.start().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Boot, "{at}: {err}");
        // The VM died with its supervisor.
        assert_no_process_uses(&fx.home()).await;

        let rt = assert_truthful(&fx, &["crashy"]).await;
        let info = rt.get("crashy").await.unwrap().info().await.unwrap();
        assert_eq!(info.state, BoxState::Crashed, "{at}: {info:?}");
        assert!(
            info.reason
                .as_deref()
                .unwrap_or_default()
                .contains("supervisor"),
            "{at}: {info:?}"
        );
        assert_eq!((info.supervisor_pid, info.vm_pid), (None, None), "{info:?}");
        if at == "start.running" {
            // A crashed box starts again.
            let bx = rt.get("crashy").await.unwrap();
            bx.start().await.unwrap();
            assert_eq!(bx.info().await.unwrap().state, BoxState::Running);
            bx.stop().await.unwrap();
        }
        // Removed without force, and its name is free again.
        rt.remove("crashy", RemoveMode::IfStopped).await.unwrap();
        assert_truthful(&fx, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rm_racing_a_start_leaves_no_invisible_vm() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    // The rm right away (it usually wins), once the supervisor has the box (it is
    // starting), and forced while it starts.
    for (delay_ms, mode) in [
        (0, RemoveMode::IfStopped),
        (300, RemoveMode::IfStopped),
        (300, RemoveMode::Kill),
    ] {
        let bx = rt.create(support::named("racy")).await.unwrap();
        let starter = tokio::spawn(async move { bx.start().await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let removed = rt.remove("racy", mode).await;
        let started = starter.await.unwrap();
        match &removed {
            Ok(()) => {
                // Whatever the start did, no VM of the box may be left.
                assert_no_process_uses(&fx.home()).await;
                assert!(rt.get("racy").await.is_err());
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
                assert_eq!(mode, RemoveMode::IfStopped);
                // The start won: the box is there, and running if the start succeeded.
                let info = rt.get("racy").await.unwrap().info().await.unwrap();
                assert_eq!(info.state == BoxState::Running, started.is_ok(), "{info:?}");
                rt.remove("racy", RemoveMode::Kill).await.unwrap();
                assert_no_process_uses(&fx.home()).await;
            }
        }
        eprintln!("rm after {delay_ms} ms ({mode:?}): {removed:?}; start: {started:?}");
        assert_truthful(&fx, &[]).await;
    }
}
