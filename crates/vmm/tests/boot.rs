//! A full boot on KVM: the `cargo xtask kernel` bzImage and the agent initramfs under
//! `boxlite-vmm`, with an ext4 image disk (vda, read-only), an ext4 data disk (vdb) and the
//! protocol on the virtio console, to the agent's handshake, an exec, and a clean power-off.
//!
//! Needs `BOXLITE_KERNEL_DIR` (`cargo xtask kernel --print-path`) and
//! `BOXLITE_GUEST_INITRAMFS` (`cargo xtask guest --print-path`), and hardware KVM. On the
//! paravirtual kvm_pvm it is skipped with the reason, unless `BOXLITE_FORCE_KVM_BOOT=1`
//! forces it (with a long deadline), and then it fails saying how far the guest got.
//! `BOXLITE_VMM_KERNEL=vmlinux` boots the ELF kernel through PVH instead of the bzImage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::ExecRequest;
use protocol::client::Client;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// Hardware KVM boots in well under a second; this allows for a loaded CI machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(60);
/// Forced on kvm_pvm, where everything is slow (when it works at all).
const FORCED_DEADLINE: Duration = Duration::from_secs(300);

fn inputs() -> Option<(PathBuf, PathBuf, Duration)> {
    let format = std::env::var("BOXLITE_VMM_KERNEL").unwrap_or_else(|_| "bzImage".into());
    let kernel = std::env::var_os("BOXLITE_KERNEL_DIR").map(|d| PathBuf::from(d).join(format));
    let initramfs = std::env::var_os("BOXLITE_GUEST_INITRAMFS").map(PathBuf::from);
    let (Some(kernel), Some(initramfs)) = (kernel, initramfs) else {
        eprintln!(
            "skipped: set BOXLITE_KERNEL_DIR=$(cargo xtask kernel --print-path) and \
             BOXLITE_GUEST_INITRAMFS=$(cargo xtask guest --print-path) to boot the agent on KVM"
        );
        return None;
    };
    let forced = std::env::var("BOXLITE_FORCE_KVM_BOOT").is_ok_and(|v| v == "1");
    match vmm::host::kvm_unusable() {
        Some(why) if !forced => {
            eprintln!("skipped: {why} (BOXLITE_FORCE_KVM_BOOT=1 tries anyway)");
            None
        }
        Some(_) => Some((kernel, initramfs, FORCED_DEADLINE)),
        None => Some((kernel, initramfs, BOOT_DEADLINE)),
    }
}

fn cmd(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// A root filesystem with a shell and `cat`, their libraries, and `/etc` basics.
fn image_tree(dir: &Path) {
    for (host, inside) in [("/bin/dash", "bin/sh"), ("/usr/bin/cat", "bin/cat")] {
        let dest = dir.join(inside);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(host, &dest).unwrap();
        let ldd = Command::new("ldd").arg(host).output().unwrap();
        for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if let Some(lib) = word.strip_prefix('/') {
                let dest = dir.join(lib);
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(word, &dest).unwrap();
            }
        }
    }
    for d in ["etc", "proc", "sys", "dev", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

struct Vmm {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Vmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vmm {
    fn boot(kernel: &Path, initramfs: &Path) -> Vmm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        image_tree(&d.join("tree"));
        let (image, data) = (d.join("image.ext4"), d.join("data.ext4"));
        cmd(
            "mkfs.ext4",
            &[
                "-q",
                "-d",
                d.join("tree").to_str().unwrap(),
                image.to_str().unwrap(),
                "32M",
            ],
        );
        std::fs::File::create(&data)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        cmd("mkfs.ext4", &["-q", data.to_str().unwrap()]);
        let child = Command::new(env!("CARGO_BIN_EXE_boxlite-vmm"))
            .arg("--kernel")
            .arg(kernel)
            .arg("--initramfs")
            .arg(initramfs)
            .args(["--cpus", "2", "--memory", "512", "--force-kvm", "--cmdline"])
            .arg(
                "console=ttyS0 reboot=k panic=-1 boxlite.root=/dev/vda boxlite.data=/dev/vdb \
                 boxlite.hostname=vmm-test",
            )
            .arg("--disk")
            .arg(format!("{},ro", image.display()))
            .arg("--disk")
            .arg(&data)
            .arg("--console-socket")
            .arg(d.join("agent.sock"))
            .arg("--serial-log")
            .arg(d.join("serial.log"))
            .arg("--report")
            .arg(d.join("report.json"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Vmm { child, dir }
    }

    /// How far the guest got: the end of its serial console.
    fn progress(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("serial.log")).unwrap_or_default();
        let start = log.char_indices().rev().nth(2500).map_or(0, |(i, _)| i);
        format!("serial console (last lines):\n{}", &log[start..])
    }

    async fn connect(&mut self, deadline: Duration) -> Client {
        let until = Instant::now() + deadline;
        let socket = self.dir.path().join("agent.sock");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "boxlite-vmm ended ({status}) before the handshake; {}",
                    self.progress()
                );
            }
            assert!(
                Instant::now() < until,
                "no handshake within {deadline:?}; {}",
                self.progress()
            );
            if let Ok(stream) = UnixStream::connect(&socket).await {
                let left = until.saturating_duration_since(Instant::now());
                if let Ok(Ok((client, _hello))) =
                    tokio::time::timeout(left, Client::handshake(stream)).await
                {
                    return client;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_boots_on_kvm_and_runs_a_command() {
    let Some((kernel, initramfs, deadline)) = inputs() else {
        return;
    };
    let started = Instant::now();
    let mut vm = Vmm::boot(&kernel, &initramfs);
    let client = vm.connect(deadline).await;
    eprintln!("handshake after {:?}", started.elapsed());

    let mut exec = client
        .exec(ExecRequest::new([
            "sh",
            "-c",
            "cat /proc/sys/kernel/hostname",
        ]))
        .await
        .unwrap();
    drop(exec.stdin.take());
    let mut out = String::new();
    exec.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(exec.wait().await.unwrap().success());
    assert_eq!(out, "vmm-test\n");

    client.shutdown().await.unwrap();
    drop(client);
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = vm.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < until,
            "the VM did not power off; {}",
            vm.progress()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "boxlite-vmm exit {status}; {}",
        vm.progress()
    );
    let report = std::fs::read_to_string(vm.dir.path().join("report.json")).unwrap();
    eprintln!("report: {report}");
    assert!(
        report.contains("\"boot_us\":") && !report.contains("\"boot_us\":null"),
        "{report}"
    );
}
