//! The agent's network configuration in a real VM: QEMU (`-M microvm`, TCG) with a
//! virtio-net card on `-netdev stream` over an inherited socket, the other end served by
//! passt, and a `FROM scratch`-like image holding only the static `netprobe`. Checks that the
//! agent configured `lo` and `eth0` from `boxlite.net`, wrote `host.boxlite.internal` into
//! `/etc/hosts`, and that a TCP connection leaves the box (passt maps the gateway to the
//! host's loopback, so the traffic never leaves this machine). Runs when
//! `BOXLITE_KERNEL_DIR`, `BOXLITE_GUEST_INITRAMFS` and `BOXLITE_NETPROBE` are set and passt
//! is installed; skipped with a reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::ExecRequest;
use protocol::client::Client;
use tokio::net::UnixStream;

use support::{cmd, run};

const BOOT_DEADLINE: Duration = Duration::from_secs(180);
/// The guest's settings, the ones netstack gives (crates/netstack/src/addr.rs).
const NET: &str = "10.0.2.15/24,10.0.2.2,1500";

fn inputs() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let kernel = std::env::var_os("BOXLITE_KERNEL_DIR").map(|d| PathBuf::from(d).join("bzImage"));
    let initramfs = std::env::var_os("BOXLITE_GUEST_INITRAMFS").map(PathBuf::from);
    let netprobe = std::env::var_os("BOXLITE_NETPROBE").map(PathBuf::from);
    let passt = Command::new("passt").arg("--version").output().is_ok();
    match (kernel, initramfs, netprobe) {
        (Some(k), Some(i), Some(n)) if passt => Some((k, i, n)),
        _ => {
            eprintln!(
                "skipped: needs passt (apt-get install passt) and BOXLITE_KERNEL_DIR, \
                 BOXLITE_GUEST_INITRAMFS and BOXLITE_NETPROBE (cargo xtask test sets them)"
            );
            None
        }
    }
}

struct Vm {
    qemu: Child,
    passt: Child,
    dir: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        for child in [&mut self.qemu, &mut self.passt] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Clears close-on-exec so a child inherits `fd` under the same number.
fn inheritable(fd: &impl AsRawFd) {
    rustix::io::fcntl_setfd(
        // SAFETY: the descriptor is open and outlives this call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) },
        rustix::io::FdFlags::empty(),
    )
    .unwrap();
}

impl Vm {
    fn boot(kernel: &Path, initramfs: &Path, netprobe: &Path, net: Option<&str>) -> Vm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tree = d.join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::copy(netprobe, tree.join("netprobe")).unwrap();
        let image = d.join("image.ext4");
        let (tree_s, image_s) = (tree.to_str().unwrap(), image.to_str().unwrap());
        cmd("mkfs.ext4", &["-q", "-d", tree_s, image_s, "16M"]);

        let (vm_end, passt_end) = StdUnixStream::pair().unwrap();
        inheritable(&vm_end);
        inheritable(&passt_end);
        let passt = Command::new("passt")
            .args(["-f", "-q", "-4", "-1", "-t", "none", "-u", "none"])
            .args(["--no-dhcp", "--no-ndp", "--no-ra", "--no-dhcpv6"])
            .args([
                "-a",
                "10.0.2.15",
                "-n",
                "24",
                "-g",
                "10.0.2.2",
                "-m",
                "1500",
            ])
            .args(["-F", &passt_end.as_raw_fd().to_string()])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        drop(passt_end);
        let mut line = "console=ttyS0 reboot=t panic=-1 boxlite.root=/dev/vda boxlite.data=tmpfs \
                        boxlite.hostname=net-test boxlite.port=agent"
            .to_owned();
        if let Some(net) = net {
            line.push_str(&format!(" boxlite.net={net} boxlite.hostaddr=10.0.2.2"));
        }
        let fd = vm_end.as_raw_fd();
        let qemu = Command::new("qemu-system-x86_64")
            .args(["-M", "microvm,acpi=off", "-accel", "tcg", "-m", "256"])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initramfs)
            .args(["-append", &line])
            .arg("-serial")
            .arg(format!("file:{}", d.join("console.log").display()))
            .arg("-drive")
            .arg(format!(
                "id=img,file={},format=raw,if=none,readonly=on",
                image.display()
            ))
            .args(["-device", "virtio-blk-device,drive=img"])
            // The exact arguments the qemu engine passes (crates/boxlite/src/engine/qemu.rs).
            .arg("-netdev")
            .arg(format!(
                "stream,id=net0,server=off,addr.type=fd,addr.str={fd}"
            ))
            .args([
                "-device",
                "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56",
            ])
            .args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=agent,path={},server=on,wait=off",
                d.join("agent.sock").display()
            ))
            .args(["-device", "virtserialport,chardev=agent,name=agent"])
            .args([
                "-sandbox",
                "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        drop(vm_end);
        Vm { qemu, passt, dir }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
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
            assert!(Instant::now() < deadline, "no hello: {}", self.console());
            if let Ok(stream) = UnixStream::connect(&socket).await {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Ok(Ok((client, _))) =
                    tokio::time::timeout(left, Client::handshake(stream)).await
                {
                    return client;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn probe(&self, client: &Client, args: &[&str]) -> String {
        let mut argv = vec!["/netprobe"];
        argv.extend_from_slice(args);
        let out = run(client, ExecRequest::new(argv)).await.unwrap();
        format!("{}{}", out.out(), out.err())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_configures_the_network_from_the_command_line() {
    let Some((kernel, initramfs, netprobe)) = inputs() else {
        return;
    };
    // What the box reaches as 10.0.2.2: passt maps the gateway to the host's loopback.
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in echo.incoming().flatten() {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                let _ = stream.write_all(&buf[..n]);
            }
        }
    });

    let mut vm = Vm::boot(&kernel, &initramfs, &netprobe, Some(NET));
    let client = vm.connect().await;
    let ifconfig = vm.probe(&client, &["ifconfig"]).await;
    assert!(
        ifconfig.contains("iface lo flags=up,loopback mtu=65536")
            && ifconfig.contains("inet=127.0.0.1/8"),
        "{ifconfig}\n{}",
        vm.console()
    );
    assert!(
        ifconfig.contains("mtu=1500 mac=52:54:00:12:34:56 inet=10.0.2.15/24"),
        "{ifconfig}"
    );
    assert!(ifconfig.contains("iface eth0 flags=up,"), "{ifconfig}");
    assert!(
        ifconfig.contains("route default via=10.0.2.2 dev=eth0"),
        "{ifconfig}"
    );
    let port = port.to_string();
    let out = vm
        .probe(
            &client,
            &["connect", "host.boxlite.internal", &port, "--send", "hello"],
        )
        .await;
    assert_eq!(out, "connected reply=hello\n", "{}", vm.console());
    drop(client);

    // Without boxlite.net the card stays down, with no address and no route.
    let mut vm = Vm::boot(&kernel, &initramfs, &netprobe, None);
    let client = vm.connect().await;
    let ifconfig = vm.probe(&client, &["ifconfig"]).await;
    assert!(
        ifconfig.contains("iface eth0 flags=broadcast,multicast mtu=1500"),
        "{ifconfig}"
    );
    assert!(ifconfig.contains("inet=127.0.0.1/8"), "{ifconfig}");
    assert!(ifconfig.contains("route default none"), "{ifconfig}");
}
