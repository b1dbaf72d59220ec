//! The `boxlite` command against real boxes (QEMU; TCG where there is no hardware KVM): run's
//! output and exit status, `-it` on a real pseudo-terminal, and a box driven by separate
//! invocations (create, start, exec, cp, stop, start, rm). Skipped, with the reason, unless
//! `BOXLITE_KERNEL_DIR` and `BOXLITE_GUEST_INITRAMFS` are set (`cargo xtask test` sets them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Run, boxlite};
use oci_layers::{Compression, LayoutBuilder};

/// A state directory with a small image (`tools`: the host's dash and a few coreutils).
struct VmEnv {
    dir: tempfile::TempDir,
    kernel: PathBuf,
    initramfs: PathBuf,
}

impl VmEnv {
    fn new() -> Option<VmEnv> {
        let (Some(kernel_dir), Some(initramfs)) = (
            std::env::var_os("BOXLITE_KERNEL_DIR"),
            std::env::var_os("BOXLITE_GUEST_INITRAMFS"),
        ) else {
            eprintln!(
                "skipped: set BOXLITE_KERNEL_DIR and BOXLITE_GUEST_INITRAMFS to boot boxes \
                 (`cargo xtask test` does)"
            );
            return None;
        };
        let env = VmEnv {
            dir: tempfile::Builder::new()
                .prefix("bxc")
                .tempdir_in("/tmp")
                .unwrap(),
            kernel: PathBuf::from(kernel_dir).join("bzImage"),
            initramfs: initramfs.into(),
        };
        let layout = env.dir.path().join("layout");
        tools_image(&env.dir.path().join("tree"))
            .write_layout(&layout, "latest")
            .unwrap();
        env.run(&[
            "image",
            "import",
            layout.to_str().unwrap(),
            "--name",
            "tools",
        ])
        .ok();
        Some(env)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = boxlite();
        cmd.arg("--home")
            .arg(self.dir.path().join("home"))
            .env("BOXLITE_KERNEL", &self.kernel)
            .env("BOXLITE_INITRAMFS", &self.initramfs)
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }
}

impl Drop for VmEnv {
    /// Stops whatever a failed test left running (supervisors are detached on purpose).
    fn drop(&mut self) {
        let _ = self.command(&["rm", "-f", "tty", "kept", "bg"]).output();
    }
}

#[test]
fn run_gives_the_commands_output_and_exit_status() {
    let Some(env) = VmEnv::new() else { return };
    let run = env.run(&[
        "run",
        "--rm",
        "tools",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert_eq!(run.stdout, "out\n");
    assert_eq!(run.stderr, "err\n");
    let run = env.run(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "tools",
        "sh",
        "-c",
        "echo $GREETING; pwd",
    ]);
    assert_eq!(run.ok(), "hi\n/tmp\n");
    let run = env.run(&["run", "--rm", "tools", "no-such-command"]);
    assert_eq!(run.code, Some(127), "{run:?}");
    assert!(run.stderr.contains("no-such-command"), "{run:?}");
    // stdin with -i.
    let mut cmd = env.command(&["run", "--rm", "-i", "tools", "cat"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"piped in\n");
    // --rm left nothing.
    assert_eq!(env.run(&["ls", "-a", "--json"]).ok().trim(), "[]");
}

#[test]
fn run_it_works_on_a_real_terminal() {
    let Some(env) = VmEnv::new() else { return };
    let cmd = env.command(&[
        "run",
        "--rm",
        "--name",
        "tty",
        "-it",
        "tools",
        "sh",
        "-c",
        "stty size; test -t 0 && echo a-tty; exit 4",
    ]);
    let line = format!(
        "stty rows 31 cols 101; {}",
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut script = Command::new("script");
    script.args(["-qec", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = match script.output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: no util-linux `script` for a pty: {e}");
            return;
        }
    };
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("31 101"), "{shown}");
    assert!(shown.contains("a-tty"), "{shown}");
    assert_eq!(out.status.code(), Some(4), "{shown}");
}

#[test]
fn a_box_driven_by_separate_invocations_keeps_its_disk() {
    let Some(env) = VmEnv::new() else { return };
    env.run(&["create", "--name", "kept", "--memory", "256", "tools"])
        .ok();
    env.run(&["start", "kept"]).ok();
    assert_eq!(
        env.run(&["exec", "kept", "echo", "from-exec"]).ok(),
        "from-exec\n"
    );

    let host = env.dir.path().join("payload.txt");
    std::fs::write(&host, "payload\n").unwrap();
    env.run(&["cp", host.to_str().unwrap(), "kept:/root/"]).ok();
    env.run(&["exec", "kept", "sh", "-c", "echo written > /root/note"])
        .ok();
    let back = env.dir.path().join("back");
    env.run(&["cp", "kept:/root/payload.txt", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "payload\n");

    env.run(&["stop", "kept"]).ok();
    let ls = env.run(&["ls", "-a"]).ok().to_string();
    assert!(ls.contains("stopped"), "{ls}");
    env.run(&["restart", "kept"]).ok();
    assert_eq!(
        env.run(&["exec", "kept", "cat", "/root/note", "/root/payload.txt"])
            .ok(),
        "written\npayload\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(env.run(&["inspect", "kept"]).ok()).unwrap();
    assert!(inspect.to_string().contains("\"running\""), "{inspect}");
    env.run(&["rm", "kept"]).fails_with(&["rm -f"]);
    env.run(&["rm", "-f", "kept"]).ok();
    assert_eq!(env.run(&["ls", "-a", "--json"]).ok().trim(), "[]");
}

#[test]
fn run_d_runs_the_command_in_the_background() {
    let Some(env) = VmEnv::new() else { return };
    env.run(&[
        "run",
        "-d",
        "--name",
        "bg",
        "tools",
        "sh",
        "-c",
        "echo background-output; exit 5",
    ])
    .ok();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ls = env.run(&["ls", "-a"]).ok().to_string();
        if ls.contains("exit 5") {
            break;
        }
        assert!(Instant::now() < deadline, "{ls}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = env.run(&["logs", "bg"]).ok().to_string();
    assert!(logs.contains("background-output"), "{logs}");
    env.run(&["rm", "bg"]).ok();
}

/// The host's dash and a few coreutils with their shared libraries, as an image.
fn tools_image(tree: &Path) -> LayoutBuilder {
    for (host, inside) in [
        ("/bin/dash", "bin/sh"),
        ("/usr/bin/cat", "bin/cat"),
        ("/usr/bin/echo", "bin/echo"),
        ("/usr/bin/stty", "bin/stty"),
        ("/usr/bin/test", "bin/test"),
        ("/usr/bin/pwd", "bin/pwd"),
        ("/usr/bin/sleep", "bin/sleep"),
    ] {
        let dest = tree.join(inside);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(host, &dest).unwrap();
        let ldd = Command::new("ldd").arg(host).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dest = tree.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(lib, dest).unwrap();
        }
    }
    for d in ["etc", "root", "tmp"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    LayoutBuilder::new()
        .layer_dir(tree, Compression::Gzip)
        .env(["PATH=/bin"])
}

#[test]
fn a_second_ctrl_c_kills_a_command_that_ignores_the_first() {
    let Some(env) = VmEnv::new() else { return };
    let mut child = env
        .command(&[
            "run",
            "--rm",
            "tools",
            "sh",
            "-c",
            "trap '' INT; echo ready; sleep 300",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id() as libc::pid_t;
    let interrupt = || {
        // SAFETY: kill(2) on the pid of the child this test spawned and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    };
    interrupt();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let early = child.try_wait().unwrap();
    assert!(early.is_none(), "one Ctrl-C ended it: {early:?}");
    let second = std::time::Instant::now();
    interrupt();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            second.elapsed() < std::time::Duration::from_secs(30),
            "the second Ctrl-C did not end it"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(137), "{status:?}");
}

#[test]
fn run_pulls_a_missing_image_and_keeps_stdout_the_commands() {
    let Some(env) = VmEnv::new() else { return };
    let registry = registry_fixture::Registry::builder().start().unwrap();
    let reference = format!("{}/e2e/tools:v1", registry.host());
    let status = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!(
            "oci:{}:latest",
            env.dir.path().join("layout").display()
        ))
        .arg(format!("docker://{reference}"))
        .status()
        .unwrap();
    assert!(status.success());
    let run = env.run(&["run", "--rm", &reference, "cat", "/etc/passwd"]);
    assert_eq!(run.ok(), "root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(run.stderr, "");
    // Pulled once: `never` finds it, `always` pulls again (nothing new to download).
    env.run(&[
        "run", "--rm", "--pull", "never", &reference, "test", "-d", "/etc",
    ])
    .ok();
    env.run(&[
        "run", "--rm", "--pull", "always", &reference, "test", "-d", "/etc",
    ])
    .ok();
}
