//! The agent in a real VM: the guest kernel and the `cargo xtask guest` initramfs under QEMU
//! (`-M microvm`, TCG, so it needs no KVM), with an ext4 image disk, an ext4 data disk and the
//! protocol on a virtio console. Runs when `BOXLITE_KERNEL_DIR` (the output of
//! `cargo xtask kernel --print-path`) and `BOXLITE_GUEST_INITRAMFS` (the output of
//! `cargo xtask guest --print-path`) are set; skipped with a reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{ExecRequest, TtySize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use support::{cmd, image_tree, run, sh};

/// Generous: TCG on a loaded 2-core machine boots in a few seconds, but may take much longer.
const BOOT_DEADLINE: Duration = Duration::from_secs(180);

fn inputs() -> Option<(PathBuf, PathBuf)> {
    let kernel = std::env::var_os("BOXLITE_KERNEL_DIR").map(|d| PathBuf::from(d).join("bzImage"));
    let initramfs = std::env::var_os("BOXLITE_GUEST_INITRAMFS").map(PathBuf::from);
    match (kernel, initramfs) {
        (Some(k), Some(i)) => Some((k, i)),
        _ => {
            eprintln!(
                "skipped: set BOXLITE_KERNEL_DIR=$(cargo xtask kernel --print-path) and \
                 BOXLITE_GUEST_INITRAMFS=$(cargo xtask guest --print-path) to boot the agent \
                 in QEMU"
            );
            None
        }
    }
}

struct Vm {
    qemu: Child,
    dir: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

impl Vm {
    fn boot(kernel: &PathBuf, initramfs: &PathBuf) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        image_tree(&d.join("tree"));
        let image = d.join("image.ext4");
        let data = d.join("data.ext4");
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
            .set_len(128 << 20)
            .unwrap();
        cmd("mkfs.ext4", &["-q", data.to_str().unwrap()]);
        let qemu = Command::new("qemu-system-x86_64")
            .args([
                "-M",
                "microvm,acpi=off",
                "-accel",
                "tcg",
                "-m",
                "512",
                "-smp",
                "1",
            ])
            .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initramfs)
            .args([
                "-append",
                "console=ttyS0 reboot=t panic=-1 boxlite.root=/dev/vda boxlite.data=/dev/vdb \
                 boxlite.hostname=vm-test boxlite.port=agent",
            ])
            .arg("-serial")
            .arg(format!("file:{}", d.join("console.log").display()))
            .arg("-drive")
            .arg(format!(
                "id=img,file={},format=raw,if=none,readonly=on",
                image.display()
            ))
            .args(["-device", "virtio-blk-device,drive=img"])
            .arg("-drive")
            .arg(format!(
                "id=data,file={},format=raw,if=none",
                data.display()
            ))
            .args(["-device", "virtio-blk-device,drive=data"])
            .args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=agent,path={},server=on,wait=off",
                d.join("agent.sock").display()
            ))
            // A serial port, not a `virtconsole`: QEMU drops console output that the socket
            // cannot take at once.
            .args(["-device", "virtserialport,chardev=agent,name=agent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Vm { qemu, dir }
    }

    /// The end of the console log, for failure messages.
    fn console(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default();
        let start = log.char_indices().rev().nth(3000).map_or(0, |(i, _)| i);
        log[start..].to_owned()
    }

    async fn connect(&mut self) -> Client {
        let deadline = Instant::now() + BOOT_DEADLINE;
        let socket = self.dir.path().join("agent.sock");
        loop {
            assert!(
                self.qemu.try_wait().unwrap().is_none(),
                "QEMU ended: {}",
                self.console()
            );
            if Instant::now() >= deadline {
                let keep = std::env::temp_dir().join("boxlite-vm-test-console.log");
                let _ = std::fs::copy(self.dir.path().join("console.log"), &keep);
                panic!(
                    "no hello in time (console in {}): {}",
                    keep.display(),
                    self.console()
                );
            }
            if let Ok(stream) = UnixStream::connect(&socket).await {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok((client, hello))) =
                    tokio::time::timeout(left, Client::handshake(stream)).await
                {
                    assert!(
                        !hello.capabilities.iter().any(|c| c == "root-failed"),
                        "{hello:?}"
                    );
                    return client;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_boots_serves_and_powers_off_a_vm() {
    let Some((kernel, initramfs)) = inputs() else {
        return;
    };
    let mut vm = Vm::boot(&kernel, &initramfs);
    let client = vm.connect().await;

    let out = run(
        &client,
        sh("cat /proc/sys/kernel/hostname; cat /proc/1/cmdline; echo; ls /"),
    )
    .await
    .unwrap();
    assert!(out.out().starts_with("vm-test\n/init\0"), "{out:?}");

    // The console port is raw: every byte value passes unchanged in both directions.
    {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 256) as u8).collect();
        let mut exec = client.exec(ExecRequest::new(["cat"])).await.unwrap();
        let mut stdin = exec.stdin.take().unwrap();
        let mut stdout = exec.stdout.take().unwrap();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            stdin.write_all(&sent).await.unwrap();
            stdin.shutdown().await.unwrap();
        });
        let mut echoed = Vec::new();
        stdout.read_to_end(&mut echoed).await.unwrap();
        writer.await.unwrap();
        assert!(
            echoed == data,
            "{} of {} bytes came back, or changed",
            echoed.len(),
            data.len()
        );
        assert!(exec.wait().await.unwrap().success());
    }

    // Bulk output with a checksum computed in the guest.
    let out = run(&client, sh("head -c 20000000 /dev/urandom > /root/blob && sha256sum /root/blob >&2 && cat /root/blob"))
        .await
        .unwrap();
    let ours: String = Sha256::digest(&out.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(out.stdout.len(), 20_000_000);
    assert!(out.err().starts_with(&ours), "{} vs {ours}", out.err());

    let mut request = sh("stty size");
    request.tty = Some(TtySize { rows: 33, cols: 99 });
    let out = run(&client, request).await.unwrap();
    assert!(out.out().contains("33 99"), "{out:?}");

    let out = run(&client, sh("echo persisted > /root/note && echo ok"))
        .await
        .unwrap();
    assert_eq!(out.out(), "ok\n");

    // The host can go away and come back: the agent reopens the port and says hello again.
    // (Every handle on the connection must go for the client to close it.)
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = vm.connect().await;
    let out = run(&client, sh("cat /root/note")).await.unwrap();
    assert_eq!(out.out(), "persisted\n");

    client.shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = vm.qemu.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "QEMU did not end: {}",
            vm.console()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "QEMU: {status}; console: {}",
        vm.console()
    );
    let data = vm.dir.path().join("data.ext4");
    let data = data.to_str().unwrap();
    assert_eq!(
        cmd("debugfs", &["-R", "cat /upper/root/note", data]),
        "persisted\n"
    );
    let state = cmd("dumpe2fs", &["-h", data]);
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("Filesystem state:") && l.ends_with("clean")),
        "{state}"
    );
}
