//! The box commands without a VM: help, bad inputs (each one clear error line, exit 125),
//! and the life of a box that is created but never started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Env, Run, boxlite, demo_layout};

/// boxlite's own failures exit with this status (docker's convention).
const EXIT_BOXLITE: i32 = 125;

/// Asserts a clean failure with status 125 whose line contains every one of `needles`.
#[track_caller]
fn fails_125(run: &Run, needles: &[&str]) -> String {
    let line = run.fails_with(needles).to_string();
    assert_eq!(run.code, Some(EXIT_BOXLITE), "{}: {line}", run.args);
    line
}

/// An environment with the demo image imported as `demo:1`.
fn with_image() -> Env {
    let env = Env::new();
    let (layout, _) = demo_layout(&env, "layout", "demo:1");
    env.import(&layout, None);
    env
}

/// `ls -a --json`, parsed.
fn boxes(env: &Env) -> Vec<serde_json::Value> {
    let json = common::ls_json(&env.run(&["ls", "-a", "--json"]));
    json.as_array().unwrap().clone()
}

/// `boxlite` with no guest kernel or initramfs from the test run's environment, nor from
/// the user's per-user guest directory (`cargo xtask kernel` may have filled it).
fn without_guest(env: &Env, args: &[&str]) -> Run {
    let mut cmd = boxlite();
    cmd.env_remove("BOXLITE_KERNEL")
        .env_remove("BOXLITE_INITRAMFS")
        .env("XDG_DATA_HOME", env.home().join("no-user-data"))
        .arg("--home")
        .arg(env.home())
        .args(args);
    Run::of(cmd)
}

#[test]
fn every_subcommand_has_help() {
    let env = Env::new();
    for sub in [
        "run", "create", "start", "stop", "restart", "exec", "ls", "inspect", "logs", "cp", "rm",
        "info", "image",
    ] {
        let run = env.run(&[sub, "--help"]);
        let out = run.ok();
        assert!(
            out.contains(&format!("Usage: boxlite {sub}")),
            "{sub}: {out}"
        );
    }
    let out = env.run(&["--help"]).ok().to_string();
    for sub in ["run", "exec", "cp", "info"] {
        assert!(out.contains(sub), "{sub} missing from --help:\n{out}");
    }
    assert!(!out.contains("__supervise"), "{out}");
}

#[test]
fn usage_errors_are_one_line_and_125() {
    let env = Env::new();
    fails_125(&env.run(&["run"]), &["IMAGE"]);
    fails_125(&env.run(&["exec", "box"]), &["CMD"]);
    fails_125(&env.run(&["start"]), &["BOX"]);
    fails_125(&env.run(&["ls", "--bogus"]), &["--bogus"]);
    fails_125(&env.run(&["run", "-d", "-i", "demo:1"]), &["--detach"]);
}

#[test]
fn unknown_boxes_are_named() {
    let env = Env::new();
    for args in [
        vec!["start", "nope"],
        vec!["stop", "nope"],
        vec!["restart", "nope"],
        vec!["exec", "nope", "true"],
        vec!["rm", "nope"],
        vec!["rm", "-f", "nope"],
        vec!["inspect", "nope"],
        vec!["logs", "nope"],
        vec!["cp", "nope:/etc/hosts", "/tmp/x"],
    ] {
        fails_125(&env.run(&args), &["no such box: nope", "boxlite ls -a"]);
    }
}

#[test]
fn bad_box_options() {
    let env = with_image();
    for sub in ["run", "create"] {
        fails_125(
            &env.run(&[sub, "-e", "FOO", "demo:1"]),
            &["-e", "FOO", "NAME=VALUE"],
        );
        fails_125(
            &env.run(&[sub, "-e", "=x", "demo:1"]),
            &["environment variable"],
        );
        fails_125(
            &env.run(&[sub, "--engine", "warp", "demo:1"]),
            &["unknown engine", "warp", "auto, kvm or qemu"],
        );
        fails_125(
            &env.run(&[sub, "--memory", "99999999", "demo:1"]),
            &["--memory 99999999", "MiB"],
        );
        fails_125(&env.run(&[sub, "--memory", "8", "demo:1"]), &["at least"]);
        fails_125(&env.run(&[sub, "--cpus", "0", "demo:1"]), &["--cpus 0"]);
        fails_125(&env.run(&[sub, "--cpus", "many", "demo:1"]), &["many"]);
        fails_125(&env.run(&[sub, "-w", "relative", "demo:1"]), &["absolute"]);
        fails_125(
            &env.run(&[sub, "--name", "bad/name", "demo:1"]),
            &["box name"],
        );
        fails_125(
            &env.run(&[sub, "--pull", "never", "no-such-image:1"]),
            &["no image named no-such-image:1"],
        );
        fails_125(
            &env.run(&[sub, "--pull", "never", "no-such-image:1", "echo", "hi"]),
            &["no image named no-such-image:1"],
        );
    }
    assert!(boxes(&env).is_empty(), "{:?}", boxes(&env));
}

#[test]
fn bad_cp_arguments() {
    let env = Env::new();
    fails_125(&env.run(&["cp", "a", "b"]), &["BOX:PATH"]);
    fails_125(&env.run(&["cp", "x:/a", "y:/b"]), &["between boxes"]);
    fails_125(&env.run(&["cp", "/tmp/a", "x:"]), &["no path in the box"]);
    fails_125(&env.run(&["cp", "a"]), &["DST"]);
}

#[test]
fn tty_needs_a_terminal() {
    let env = Env::new();
    // Checked before anything else: no box is looked up, none made.
    fails_125(
        &env.run(&["exec", "-it", "nope", "sh"]),
        &["not a terminal"],
    );
    fails_125(
        &env.run(&["run", "-it", "demo:1", "sh"]),
        &["not a terminal"],
    );
}

#[test]
fn a_created_box_lists_inspects_and_is_removed() {
    let env = with_image();
    let id = env
        .run(&[
            "create", "--name", "web", "--cpus", "2", "-e", "A=1", "demo:1",
        ])
        .ok()
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id:?}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
    let dir = env.home().join("boxes").join(&id[..16]);
    assert!(
        dir.join("disk.ext4").is_file(),
        "no disk in {}",
        dir.display()
    );

    // Not running: `ls` leaves it out, `ls -a` shows it.
    let ls = env.run(&["ls"]).ok().to_string();
    assert_eq!(ls.lines().count(), 1, "{ls}");
    assert!(ls.starts_with("ID"), "{ls}");
    let ls = env.run(&["ls", "-a"]).ok().to_string();
    let row = ls.lines().nth(1).unwrap_or_else(|| panic!("no row:\n{ls}"));
    for cell in [&id[..12], "web", "demo:1", "created", "seconds ago", "auto"] {
        assert!(row.contains(cell), "{cell:?} not in {row:?}");
    }
    for header in ["ID", "NAME", "IMAGE", "STATE", "CREATED", "ENGINE"] {
        assert!(ls.lines().next().unwrap().contains(header), "{ls}");
    }
    let listed = boxes(&env);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["state"], "created");

    // Every way of naming it works.
    for key in ["web", &id[..12], id.as_str()] {
        let json: serde_json::Value =
            serde_json::from_str(env.run(&["inspect", key]).ok()).unwrap();
        assert_eq!(json["name"], "web");
        assert_eq!(json["image"], "demo:1");
        assert_eq!(json["state"], "created");
        assert_eq!(json["options"]["cpus"], 2);
        assert_eq!(json["metrics"]["cpus"], 2);
        assert_eq!(json["metrics"]["memory_mib"], 512);
        assert!(json["metrics"]["boot_ms"].is_null());
    }
    // Never booted: no console output yet.
    assert_eq!(env.run(&["logs", "web"]).ok(), "");
    // Not running: exec and cp say so.
    fails_125(
        &env.run(&["exec", "web", "true"]),
        &["web", "created", "start"],
    );
    fails_125(
        &env.run(&["cp", "/etc/hostname", "web:/tmp/"]),
        &["web", "created"],
    );
    // Stopping a box that is not running does nothing.
    assert_eq!(env.run(&["stop", "web"]).ok(), "web\n");
    // The name is taken.
    fails_125(
        &env.run(&["create", "--name", "web", "demo:1"]),
        &["web", "in use"],
    );

    assert_eq!(env.run(&["rm", "web"]).ok(), "web\n");
    assert!(boxes(&env).is_empty());
    assert!(!dir.exists(), "{} left behind", dir.display());
    fails_125(&env.run(&["rm", "web"]), &["no such box: web"]);
}

#[test]
fn create_takes_a_main_command_and_disk_size() {
    let env = with_image();
    env.run(&[
        "create",
        "--name",
        "job",
        "--disk-size",
        "1",
        "demo:1",
        "/bin/hello",
        "-x",
    ])
    .ok();
    let json: serde_json::Value = serde_json::from_str(env.run(&["inspect", "job"]).ok()).unwrap();
    assert_eq!(
        json["options"]["command"],
        serde_json::json!(["/bin/hello", "-x"])
    );
    assert_eq!(json["options"]["disk_size_mib"], 1024);
    // Without one, the box idles (serving exec) when started.
    env.run(&["create", "--name", "idle", "demo:1"]).ok();
    let json: serde_json::Value = serde_json::from_str(env.run(&["inspect", "idle"]).ok()).unwrap();
    assert_eq!(json["options"]["command"], serde_json::json!([]));
}

#[test]
fn rm_goes_on_past_unknown_boxes() {
    let env = with_image();
    env.run(&["create", "--name", "a", "demo:1"]).ok();
    env.run(&["create", "--name", "b", "demo:1"]).ok();
    let run = env.run(&["rm", "a", "nope", "b"]);
    assert_eq!(run.code, Some(EXIT_BOXLITE));
    assert_eq!(run.stdout, "a\nb\n");
    assert!(run.stderr.contains("no such box: nope"), "{}", run.stderr);
    assert!(boxes(&env).is_empty());
}

#[test]
fn image_rm_is_refused_while_boxes_use_it() {
    let env = with_image();
    env.run(&["create", "--name", "one", "demo:1"]).ok();
    env.run(&["create", "--name", "two", "demo:1"]).ok();
    let disks = env.home().join("disks");
    assert_eq!(files_under(&disks), 1, "one base disk for the image");

    fails_125(
        &env.run(&["image", "rm", "demo:1"]),
        &["demo:1", "2 boxes", "one, two"],
    );
    assert_eq!(env.names(), ["demo:1"]);
    env.run(&["rm", "one"]).ok();
    fails_125(&env.run(&["image", "rm", "demo:1"]), &["1 box", "two"]);
    env.run(&["rm", "two"]).ok();
    env.run(&["image", "rm", "demo:1"]).ok();
    assert!(env.names().is_empty());
    assert_eq!(files_under(&disks), 0, "the base disk goes with the image");
}

#[test]
fn image_rm_of_one_of_two_names_keeps_the_boxes_working() {
    let env = with_image();
    let (layout, _) = demo_layout(&env, "layout2", "demo:1");
    env.import(&layout, Some("alias:1"));
    env.run(&["create", "--name", "one", "demo:1"]).ok();
    // The same manifest stays under the other name, so its boxes still have their image.
    env.run(&["image", "rm", "alias:1"]).ok();
    assert_eq!(files_under(&env.home().join("disks")), 1);
    fails_125(&env.run(&["image", "rm", "demo:1"]), &["one"]);
}

#[test]
fn starting_without_a_guest_kernel_says_how_to_get_one() {
    let env = with_image();
    env.run(&["create", "--name", "web", "demo:1"]).ok();
    fails_125(
        &without_guest(&env, &["start", "web"]),
        &["kernel", "cargo xtask kernel"],
    );
    // `run --rm` leaves nothing behind when the box cannot start.
    fails_125(
        &without_guest(&env, &["run", "--rm", "--name", "gone", "demo:1"]),
        &["kernel"],
    );
    let names: Vec<_> = boxes(&env).iter().map(|b| b["name"].clone()).collect();
    assert_eq!(names, ["web"]);
}

#[test]
fn info_describes_the_host() {
    let env = Env::new();
    let out = env.run(&["info"]).ok().to_string();
    for needle in [
        "state directory",
        "kvm",
        "qemu",
        "kernel",
        "initramfs",
        "supervisor",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    assert!(out.contains(env.home().to_str().unwrap()), "{out}");
    let json: serde_json::Value = serde_json::from_str(env.run(&["info", "--json"]).ok()).unwrap();
    assert_eq!(json["engines"].as_array().unwrap().len(), 2);
    // The supervisor is this very program.
    let exe = Path::new(env!("CARGO_BIN_EXE_boxlite"));
    assert_eq!(json["supervisor"], exe.to_str().unwrap());
    // PVM serves /dev/kvm on some cloud hosts; info must not call it hardware KVM.
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if kvm_usable && Path::new("/sys/module/kvm_pvm").exists() {
        assert!(out.contains("kvm_pvm"), "{out}");
        assert_eq!(json["kvm_hardware"], false);
    }
}

#[test]
fn kernel_and_initramfs_flags_are_used() {
    let env = Env::new();
    let kernel = env.path("vmlinux");
    let initramfs = env.path("initramfs.cpio.gz");
    std::fs::write(&kernel, b"not really").unwrap();
    std::fs::write(&initramfs, b"not really").unwrap();
    let json: serde_json::Value = serde_json::from_str(
        without_guest(
            &env,
            &[
                "--kernel",
                kernel.to_str().unwrap(),
                "--initramfs",
                initramfs.to_str().unwrap(),
                "info",
                "--json",
            ],
        )
        .ok(),
    )
    .unwrap();
    assert_eq!(json["kernel"], kernel.to_str().unwrap());
    assert_eq!(json["initramfs"], initramfs.to_str().unwrap());
}

/// Regular files anywhere under `dir` (0 if it does not exist).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}
