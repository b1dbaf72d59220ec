//! Boxes across processes: a box outlives the process that made it, other processes exec in
//! it and remove it, and a supervisor killed with SIGKILL leaves a box reported as crashed.
//! Each "other process" is this test binary run again in a role (see `role`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use boxlite::{BoxCommand, BoxState, Runtime};
use support::Fixture;

/// Runs this binary again as a separate process playing `role` on box `name`.
fn in_another_process(fx: &Fixture, role: &str, name: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "role", "--nocapture", "--test-threads=1"])
        .env("BOXLITE_E2E_ROLE", role)
        .env("BOXLITE_E2E_HOME", fx.home())
        .env("BOXLITE_E2E_BOX", name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "role {role} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Not a test of its own: the body of the other processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role() {
    let Ok(role) = std::env::var("BOXLITE_E2E_ROLE") else {
        return;
    };
    let home = PathBuf::from(std::env::var_os("BOXLITE_E2E_HOME").unwrap());
    let name = std::env::var("BOXLITE_E2E_BOX").unwrap();
    let (kernel, initramfs) = support::guest().unwrap();
    let rt = Runtime::open(support::options_for(&home, &kernel, &initramfs)).unwrap();
    match role.as_str() {
        "create" => {
            let options = support::named(&name);
            rt.create(options).await.unwrap().start().await.unwrap();
        }
        "exec" => {
            let bx = rt.get(&name).await.unwrap();
            let out = bx
                .exec(BoxCommand::new("echo").arg("hello-from-the-second-process"))
                .await
                .unwrap()
                .output()
                .await
                .unwrap();
            println!("EXEC:{}", String::from_utf8_lossy(&out.stdout).trim());
        }
        "remove" => rt.remove(&name, boxlite::RemoveMode::Kill).await.unwrap(),
        other => panic!("unknown role {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_outlives_its_creator_and_serves_other_processes() {
    let Some(fx) = Fixture::new() else { return };
    in_another_process(&fx, "create", "shared");
    let rt = fx.runtime();
    let info = rt.get("shared").await.unwrap().info().await.unwrap();
    assert_eq!(info.state, BoxState::Running, "{info:?}");
    let supervisor = info.supervisor_pid.unwrap();

    let out = in_another_process(&fx, "exec", "shared");
    assert!(out.contains("EXEC:hello-from-the-second-process"), "{out}");

    in_another_process(&fx, "remove", "shared");
    assert!(rt.get("shared").await.is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::alive(supervisor) {
        assert!(Instant::now() < deadline, "the supervisor outlived rm -f");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_supervisor_leaves_a_crashed_box_that_can_be_removed() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let options = support::named("doomed");
    let bx = rt.create(options).await.unwrap();
    bx.start().await.unwrap();
    let info = bx.info().await.unwrap();
    let (supervisor, vm) = (info.supervisor_pid.unwrap(), info.vm_pid.unwrap());
    // The supervisor this test just started.
    assert!(boxlite::internals::signal_pid(supervisor, libc::SIGKILL).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::alive(vm) {
        assert!(Instant::now() < deadline, "the VM outlived its supervisor");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, BoxState::Crashed, "{:?}", listed[0]);
    assert!(listed[0].reason.as_deref().unwrap().contains("supervisor"));
    // A crashed box starts again, and is removed without force.
    bx.start().await.unwrap();
    let out = bx
        .exec(BoxCommand::new("true"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    bx.stop().await.unwrap();
    rt.remove("doomed", boxlite::RemoveMode::IfStopped)
        .await
        .unwrap();
}
