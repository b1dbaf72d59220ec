//! The agent as PID 1, without a VM: in new PID, mount and UTS namespaces (`unshare`), with
//! real ext4 disks on loop devices and the kernel command line passed by `--cmdline`. This
//! runs the boot path of the VM for real — system mounts, disk mounts, the overlay root,
//! hostname and /etc files, reaping orphans as PID 1, the clean shutdown — and only swaps
//! the console port for a Unix socket. Root only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{Error, ErrorKind, ExecRequest};
use tokio::net::UnixStream;

use support::{cmd, image_tree, run, sh};

fn skip() -> bool {
    if !support::is_root() {
        eprintln!("skipped: PID 1 mode needs root (namespaces, loop devices, mounts)");
        return true;
    }
    false
}

/// Loop devices that are detached when the test ends.
struct Loops(Vec<String>);

impl Loops {
    fn attach(&mut self, file: &Path, read_only: bool) -> String {
        let mut args = vec!["-f", "--show"];
        if read_only {
            args.push("--read-only");
        }
        let file = file.to_str().unwrap();
        args.push(file);
        let dev = cmd("losetup", &args).trim().to_owned();
        self.0.push(dev.clone());
        dev
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

struct Disks {
    dir: tempfile::TempDir,
    _loops: Loops,
    image: String,
    data: String,
}

impl Disks {
    /// An image disk and a data disk; the data disk is formatted unless `format_data` is off.
    fn new(format_data: bool) -> Disks {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        image_tree(&tree);
        let image = dir.path().join("image.ext4");
        let data = dir.path().join("data.ext4");
        cmd(
            "mkfs.ext4",
            &[
                "-q",
                "-d",
                tree.to_str().unwrap(),
                image.to_str().unwrap(),
                "32M",
            ],
        );
        std::fs::File::create(&data)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        if format_data {
            cmd("mkfs.ext4", &["-q", data.to_str().unwrap()]);
        }
        let mut loops = Loops(Vec::new());
        let image = loops.attach(&image, true);
        let data = loops.attach(&data, false);
        Disks {
            dir,
            _loops: loops,
            image,
            data,
        }
    }

    fn data_file(&self) -> PathBuf {
        self.dir.path().join("data.ext4")
    }
}

/// The agent as PID 1 of fresh namespaces.
struct Init {
    child: Child,
    socket: PathBuf,
    _sockdir: tempfile::TempDir,
}

impl Init {
    fn boot(cmdline: &str) -> Init {
        // The agent binds the socket after mounting its own /tmp, /run, …, so it must go
        // where none of those hides it (the target directory does not do: it is under /tmp
        // when the checkout is).
        let sockdir = support::outside_agent_mounts();
        let socket = sockdir.path().join("port.sock");
        assert!(
            socket.as_os_str().len() <= support::MAX_SOCKET_PATH,
            "socket path too long to bind: {}",
            socket.display()
        );
        let child = Command::new("unshare")
            // `--net`: PID 1 configures the network (loopback at least), which must be a
            // fresh namespace's, not this machine's.
            .args([
                "--mount",
                "--pid",
                "--uts",
                "--net",
                "--fork",
                "--kill-child",
            ])
            .args(["--propagation", "private", "--"])
            .arg(support::AGENT)
            .args(["--pid1", "--cmdline", cmdline, "--listen"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Init {
            child,
            socket,
            _sockdir: sockdir,
        }
    }

    async fn connect(&mut self) -> (Client, protocol::Hello) {
        let deadline = Instant::now() + support::STEP;
        loop {
            if let Ok(stream) = UnixStream::connect(&self.socket).await {
                return tokio::time::timeout(support::STEP, Client::handshake(stream))
                    .await
                    .unwrap()
                    .unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the agent ended before listening ({status}): {}",
                    self.stderr()
                );
            }
            assert!(Instant::now() < deadline, "the agent never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the namespace to end (the agent rebooted it) and returns the console.
    fn wait_end(&mut self) -> String {
        let deadline = Instant::now() + support::STEP;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the agent did not end its namespace"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr()
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut err, &mut text).unwrap();
        }
        text
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_serves_reaps_and_shuts_down_cleanly() {
    if skip() {
        return;
    }
    let disks = Disks::new(true);
    let mut init = Init::boot(&format!(
        "console=ttyS0 reboot=t boxlite.root={} boxlite.data={} boxlite.hostname=pid-test \
         boxlite.dns=10.0.2.3,1.1.1.1 boxlite.hostaddr=10.0.2.2 boxlite.future=1",
        disks.image, disks.data
    ));
    let (client, hello) = init.connect().await;
    assert!(
        !hello.capabilities.iter().any(|c| c == "root-failed"),
        "{hello:?}"
    );

    let out = run(
        &client,
        sh(
            "cat /proc/sys/kernel/hostname; cat /etc/hosts; cat /etc/resolv.conf; \
            test -L /etc/resolv.conf || echo regular-file; echo $$; cat /proc/1/cmdline; echo; \
            echo hostname=$(cat /etc/hostname); \
            while read l; do case $l in *127.0.0.1*) echo lo-up; break;; esac; done \
            < /proc/net/fib_trie",
        ),
    )
    .await
    .unwrap();
    let text = out.out();
    assert!(text.starts_with("pid-test\n"), "{text}");
    assert!(text.contains("127.0.1.1\tpid-test\n"), "{text}");
    assert!(
        text.contains("nameserver 10.0.2.3\nnameserver 1.1.1.1\n"),
        "{text}"
    );
    assert!(text.contains("regular-file"), "{text}");
    assert!(text.contains("--pid1"), "PID 1 is the agent: {text}");
    assert!(text.contains("10.0.2.2\thost.boxlite.internal\n"), "{text}");
    assert!(text.contains("hostname=pid-test\n"), "{text}");
    // Loopback is up in the agent's fresh network namespace: its address is in the
    // local routing table (which is empty while lo is down).
    assert!(text.ends_with("lo-up\n"), "lo is down: {text}");

    // The root is the overlay: the image's files, writable, with fresh /tmp, /proc and /dev.
    let out = run(
        &client,
        sh(
            "echo kept > /root/note && mkdir -p /srv && echo new > /srv/file && \
            touch /tmp/scratch && test -c /dev/null && ls /proc/self/fd >/dev/null && echo ok",
        ),
    )
    .await
    .unwrap();
    assert_eq!(out.out(), "ok\n", "{}", out.err());

    // Orphans are PID 1's children now; it must reap them.
    let out = run(&client, sh("sleep 0.2 & sleep 0.3 & echo started"))
        .await
        .unwrap();
    assert_eq!(out.out(), "started\n");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = run(
        &client,
        sh("for s in /proc/[0-9]*/stat; do read pid comm state rest < $s && echo $state; done"),
    )
    .await
    .unwrap();
    assert!(!out.out().contains('Z'), "zombies left: {}", out.out());

    client.shutdown().await.unwrap();
    let console = init.wait_end();
    assert!(!console.contains("fatal"), "{console}");

    // The writes are on the data disk, which was unmounted cleanly.
    let data = disks.data_file();
    let data = data.to_str().unwrap();
    let note = cmd("debugfs", &["-R", "cat /upper/root/note", data]);
    assert_eq!(note, "kept\n");
    let file = cmd("debugfs", &["-R", "cat /upper/srv/file", data]);
    assert_eq!(file, "new\n");
    let state = cmd("dumpe2fs", &["-h", data]);
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("Filesystem state:") && l.ends_with("clean")),
        "{state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unformatted_data_disk_is_reported_not_formatted() {
    if skip() {
        return;
    }
    let disks = Disks::new(false);
    let mut init = Init::boot(&format!(
        "boxlite.root={} boxlite.data={}",
        disks.image, disks.data
    ));
    let (client, hello) = init.connect().await;
    assert!(
        hello.capabilities.iter().any(|c| c == "root-failed"),
        "{hello:?}"
    );
    match client.exec(ExecRequest::new(["true"])).await.unwrap_err() {
        Error::Remote { kind, message } => {
            assert_eq!(kind, ErrorKind::Io, "{message}");
            assert!(message.contains("no ext4 filesystem"), "{message}");
            assert!(message.contains(&disks.data), "{message}");
        }
        other => panic!("{other}"),
    }
    client.shutdown().await.unwrap();
    let console = init.wait_end();
    assert!(console.contains("no ext4 filesystem"), "{console}");
    // Still all zeros: the agent never formats.
    let data = std::fs::read(disks.data_file()).unwrap();
    assert!(data.iter().all(|b| *b == 0));
}

#[tokio::test]
async fn a_fatal_error_is_printed_and_ends_the_machine() {
    if skip() {
        return;
    }
    let mut init = Init::boot("boxlite.hostname=-not-valid-");
    let console = init.wait_end();
    assert!(
        console.contains("boxlite-guest: fatal: kernel command line: boxlite.hostname"),
        "{console}"
    );
}
