//! Boxes on the network, end to end under QEMU: the egress policy (host loopback, private
//! ranges, metadata, domain rules with a DNS server of the test's own), `--network off`,
//! published ports to a server in a `FROM scratch` image started by `run -d`, UDP, 200
//! concurrent connections and a SYN flood.
//!
//! Every test runs in a network namespace of its own (made here, as root): the "public"
//! servers listen on TEST-NET-2 addresses (198.51.100.0/24) on that namespace's loopback, so
//! nothing leaves the machine. Skipped, with the reason, unless `BOXLITE_KERNEL_DIR`,
//! `BOXLITE_GUEST_INITRAMFS` and `BOXLITE_NETPROBE` are set (`cargo xtask test` sets them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Run, boxlite};
use oci_layers::{Compression, LayoutBuilder};

/// The "public" server's address inside each test's namespace.
const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// A second one, that only a denied name resolves to.
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);

/// A home with the `probe` image: nothing but the static `netprobe` (FROM scratch), whose
/// entrypoint and cmd serve TCP echo on port 8080.
struct NetEnv {
    dir: tempfile::TempDir,
    kernel: PathBuf,
    initramfs: PathBuf,
    dns: Option<SocketAddr>,
}

impl NetEnv {
    fn new() -> Option<NetEnv> {
        let (Some(kernel_dir), Some(initramfs), Some(netprobe)) = (
            std::env::var_os("BOXLITE_KERNEL_DIR"),
            std::env::var_os("BOXLITE_GUEST_INITRAMFS"),
            std::env::var_os("BOXLITE_NETPROBE"),
        ) else {
            eprintln!(
                "skipped: set BOXLITE_KERNEL_DIR, BOXLITE_GUEST_INITRAMFS and BOXLITE_NETPROBE \
                 to boot boxes on a network (`cargo xtask test` does)"
            );
            return None;
        };
        if !rustix_is_root() {
            eprintln!("skipped: network namespaces need root");
            return None;
        }
        let env = NetEnv {
            dir: tempfile::Builder::new()
                .prefix("bxn")
                .tempdir_in("/tmp")
                .unwrap(),
            kernel: PathBuf::from(kernel_dir).join("bzImage"),
            initramfs: initramfs.into(),
            dns: None,
        };
        let tree = env.dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::copy(&netprobe, tree.join("netprobe")).unwrap();
        let layout = env.dir.path().join("layout");
        LayoutBuilder::new()
            .layer_dir(&tree, Compression::Gzip)
            .entrypoint(["/netprobe"])
            .cmd(["tcp-echo-server", "8080"])
            .write_layout(&layout, "latest")
            .unwrap();
        env.run(&[
            "image",
            "import",
            layout.to_str().unwrap(),
            "--name",
            "probe",
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
            .env(
                "BOXLITE_DNS",
                self.dns.map(|d| d.to_string()).unwrap_or_default(),
            )
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// Starts box `name` with `flags`, idle (`create` without a command), for execs.
    fn idle_box(&self, name: &str, flags: &[&str]) {
        let mut args = vec![
            "create", "--name", name, "--memory", "256", "--pull", "never",
        ];
        args.extend(flags);
        args.push("probe");
        self.run(&args).ok();
        self.run(&["start", name]).ok();
    }

    /// `netprobe ARGS` in box `name`.
    fn probe(&self, name: &str, args: &[&str]) -> Run {
        let mut all = vec!["exec", name, "/netprobe"];
        all.extend(args);
        self.run(&all)
    }

    /// The box's `inspect` JSON.
    fn inspect(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(self.run(&["inspect", name]).ok()).unwrap()
    }
}

impl Drop for NetEnv {
    /// Stops whatever a failed test left running (supervisors are detached on purpose).
    fn drop(&mut self) {
        let names = ["a", "b", "c", "off", "web", "udp", "flood", "busy"];
        let mut args = vec!["rm", "-f"];
        args.extend(names);
        let _ = self.command(&args).output();
    }
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `test` on a thread in a new network namespace with its loopback up and the two
/// "public" addresses on it; everything it spawns (the CLI, hence the supervisors and their
/// stacks) and every socket it binds lives there.
fn in_netns(test: impl FnOnce() + Send + 'static) {
    let handle = std::thread::spawn(move || {
        // SAFETY: unshare on this thread only changes this thread's namespace.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", "198.51.100.7/32", "dev", "lo"],
            vec!["addr", "add", "198.51.100.8/32", "dev", "lo"],
        ] {
            let status = Command::new("ip").args(&args).status().unwrap();
            assert!(status.success(), "ip {args:?}");
        }
        test();
    });
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

/// A TCP echo server at `ip` (port picked); its address.
fn echo_server(ip: Ipv4Addr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A UDP echo server at `ip`; its address.
fn udp_echo_server(ip: Ipv4Addr) -> SocketAddr {
    let socket = UdpSocket::bind((ip, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    addr
}

/// A DNS server on 127.0.0.1 answering A queries for `names`, NXDOMAIN for the rest; its
/// address and a counter of queries it saw.
fn dns_server(names: &'static [(&'static str, Ipv4Addr)]) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if let Some(reply) = dns_reply(&buf[..n], names) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
    addr
}

/// The answer to one query (RFC 1035 §4.1): the question copied, one A record if known.
fn dns_reply(query: &[u8], names: &[(&str, Ipv4Addr)]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let question_end = at + 4;
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let name = labels.join(".");
    let known = names.iter().find(|(n, _)| *n == name).map(|(_, ip)| *ip);
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x81; // response, recursion desired
    reply[3] = if known.is_some() { 0x80 } else { 0x83 }; // recursion available; NXDOMAIN
    reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let (Some(ip), 1) = (known, qtype) {
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        reply.extend_from_slice(&ip.octets());
    }
    Some(reply)
}

/// Waits until `check` holds, for up to a minute (boxes boot under TCG here).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether `run` says the connection was refused or reset (denied), as netprobe prints.
fn refused(run: &Run) -> bool {
    let said = format!("{}{}", run.stdout, run.stderr);
    !run.success && (said.contains("refused") || said.contains("reset"))
}

#[test]
fn the_host_is_reachable_only_when_allowed_and_only_on_its_port() {
    let Some(env) = NetEnv::new() else { return };
    in_netns(move || {
        let allowed = echo_server(Ipv4Addr::LOCALHOST);
        let other = echo_server(Ipv4Addr::LOCALHOST);
        let port = allowed.port().to_string();
        env.idle_box("a", &["--allow-net", &format!("host:{port}")]);
        let hello = env.probe(
            "a",
            &[
                "connect",
                "host.boxlite.internal",
                &port,
                "--send",
                "hi-host",
            ],
        );
        assert!(hello.ok().contains("hi-host"), "{hello:?}");
        let by_ip = env.probe("a", &["connect", "10.0.2.2", &port, "--send", "x"]);
        assert!(by_ip.ok().contains('x'), "{by_ip:?}");
        let wrong_port = env.probe("a", &["connect", "10.0.2.2", &other.port().to_string()]);
        assert!(refused(&wrong_port), "{wrong_port:?}");
        // Without a host rule the host is not there, on any port.
        env.idle_box("b", &[]);
        let denied = env.probe("b", &["connect", "10.0.2.2", &port]);
        assert!(refused(&denied), "{denied:?}");
        let hosts = env.run(&["exec", "b", "/netprobe", "resolve", "host.boxlite.internal"]);
        assert!(!hosts.stdout.contains("10.0.2.2"), "{hosts:?}");
        eventually("inspect counts the denial", || {
            env.inspect("b")["network"]["denied"].as_u64() >= Some(1)
        });
    });
}

#[test]
fn the_default_denies_private_loopback_and_metadata_and_allows_public() {
    let Some(env) = NetEnv::new() else { return };
    in_netns(move || {
        let public = echo_server(PUBLIC);
        env.idle_box("a", &[]);
        let ok = env.probe(
            "a",
            &[
                "connect",
                &PUBLIC.to_string(),
                &public.port().to_string(),
                "--send",
                "pub",
            ],
        );
        assert!(ok.ok().contains("pub"), "{ok:?}");
        for dst in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
        ] {
            let started = Instant::now();
            let run = env.probe("a", &["connect", dst, "80", "--timeout-ms", "20000"]);
            assert!(refused(&run), "{dst}: {run:?}");
            // A reset at once, not a timeout.
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{dst}: {run:?}"
            );
        }
        let info = env.inspect("a");
        let log = std::fs::read_to_string(info["network"]["denial_log"].as_str().unwrap());
        let log = log.unwrap_or_default();
        assert!(log.contains("169.254.169.254:80"), "{log}");
        assert_eq!(log.lines().count(), 5, "{log}");
        // The count reaches inspect within the supervisor's report interval.
        eventually("inspect counts the denials", || {
            env.inspect("a")["network"]["denied"].as_u64() == Some(5)
        });
        // Denying a public address subtracts it.
        env.idle_box("b", &["--deny-net", &format!("{PUBLIC}/32")]);
        let run = env.probe(
            "b",
            &["connect", &PUBLIC.to_string(), &public.port().to_string()],
        );
        assert!(refused(&run), "{run:?}");
    });
}

#[test]
fn domain_rules_hold_at_dns_and_at_connect() {
    let Some(mut env) = NetEnv::new() else { return };
    in_netns(move || {
        static NAMES: [(&str, Ipv4Addr); 2] = [("allowed.test", PUBLIC), ("denied.test", OTHER)];
        env.dns = Some(dns_server(&NAMES));
        let server = echo_server(PUBLIC);
        let port = server.port().to_string();
        env.idle_box("a", &["--allow-net", &format!("allowed.test:{port}")]);
        // The IP, before any DNS answer named it: refused.
        let early = env.probe("a", &["connect", &PUBLIC.to_string(), &port]);
        assert!(refused(&early), "{early:?}");
        let resolved = env.probe("a", &["resolve", "allowed.test"]);
        assert!(resolved.ok().contains(&PUBLIC.to_string()), "{resolved:?}");
        let by_name = env.probe("a", &["connect", "allowed.test", &port, "--send", "dom"]);
        assert!(by_name.ok().contains("dom"), "{by_name:?}");
        let denied = env.probe("a", &["resolve", "denied.test"]);
        assert!(
            format!("{}{}", denied.stdout, denied.stderr).contains("nxdomain"),
            "{denied:?}"
        );
        // Allowed by name, but not on another port.
        let other_port = env.probe("a", &["connect", &PUBLIC.to_string(), "1"]);
        assert!(refused(&other_port), "{other_port:?}");
    });
}

#[test]
fn network_off_leaves_only_the_loopback() {
    let Some(env) = NetEnv::new() else { return };
    in_netns(move || {
        env.idle_box("off", &["--network", "off"]);
        let shown = env.probe("off", &["ifconfig"]);
        let text = shown.ok();
        assert!(text.contains("lo"), "{text}");
        assert!(!text.contains("eth0"), "{text}");
        let info = env.inspect("off");
        assert!(info["network"].is_null(), "{info}");
    });
}

#[test]
fn a_published_port_reaches_the_images_own_server_started_by_run_d() {
    let Some(env) = NetEnv::new() else { return };
    in_netns(move || {
        // `run -d IMAGE` with no command runs the image's entrypoint and cmd (docker's rule):
        // here a TCP echo server on 8080, in an image with nothing else in it.
        env.run(&[
            "run", "-d", "--name", "web", "--memory", "256", "--pull", "never", "-p", "0:8080",
            "-p", "0:9090", "probe",
        ])
        .ok();
        let info = env.inspect("web");
        let ports = info["network"]["ports"].as_array().unwrap().clone();
        let host_port = |guest: u64| -> SocketAddr {
            let port = ports.iter().find(|p| p["guest_port"] == guest).unwrap();
            port["host"].as_str().unwrap().parse().unwrap()
        };
        let web = host_port(8080);
        assert_eq!(
            web.ip().to_string(),
            "127.0.0.1",
            "published on loopback by default"
        );
        let ls = env.run(&["ls"]).ok().to_string();
        assert!(ls.contains(&format!("{web}->8080/tcp")), "{ls}");
        let mut reply = String::new();
        eventually("the box's server answers on the published port", || {
            let Ok(mut s) = TcpStream::connect_timeout(&web, Duration::from_secs(5)) else {
                return false;
            };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if s.write_all(b"through-the-port").is_err() {
                return false;
            }
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(n) if n > 0 => {
                    reply = String::from_utf8_lossy(&buf[..n]).into_owned();
                    true
                }
                _ => false,
            }
        });
        assert_eq!(reply, "through-the-port");
        // A guest server that ends and starts again is reached again.
        let second = host_port(9090);
        for round in 0..2 {
            let mut server = env
                .command(&[
                    "exec",
                    "web",
                    "/netprobe",
                    "tcp-echo-server",
                    "9090",
                    "--max-conns",
                    "1",
                ])
                .spawn()
                .unwrap();
            eventually(
                &format!("round {round}: the restarted server answers"),
                || {
                    let Ok(mut s) = TcpStream::connect_timeout(&second, Duration::from_secs(5))
                    else {
                        return false;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut buf = [0u8; 8];
                    s.write_all(b"again").is_ok() && matches!(s.read(&mut buf), Ok(5))
                },
            );
            assert!(server.wait().unwrap().success());
        }
        // A host port in use is a clear error at start.
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        env.run(&[
            "create",
            "--name",
            "busy",
            "--pull",
            "never",
            "-p",
            &format!("{port}:80"),
            "probe",
        ])
        .ok();
        env.run(&["start", "busy"])
            .fails_with(&[&port.to_string(), "in use"]);
    });
}

#[test]
fn udp_round_trips_both_ways() {
    let Some(env) = NetEnv::new() else { return };
    in_netns(move || {
        let echo = udp_echo_server(PUBLIC);
        env.idle_box("udp", &["-p", "0:5353/udp"]);
        let out = env.probe(
            "udp",
            &[
                "udp",
                &PUBLIC.to_string(),
                &echo.port().to_string(),
                "dgram",
            ],
        );
        assert!(out.ok().contains("dgram"), "{out:?}");
        // Host to box through the published UDP port.
        let mut server = env
            .command(&["exec", "udp", "/netprobe", "udp-echo-server", "5353"])
            .spawn()
            .unwrap();
        let info = env.inspect("udp");
        let host: SocketAddr = info["network"]["ports"][0]["host"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut got = Vec::new();
        eventually("the box's UDP server echoes", || {
            socket.send_to(b"inbound", host).unwrap();
            let mut buf = [0u8; 64];
            match socket.recv(&mut buf) {
                Ok(n) => {
                    got = buf[..n].to_vec();
                    true
                }
                Err(_) => false,
            }
        });
        assert_eq!(got, b"inbound");
        let _ = server.kill();
        let _ = server.wait();
    });
}

#[test]
fn many_connections_complete_and_a_syn_flood_is_capped() {
    let Some(env) = NetEnv::new() else { return };
    in_netns(move || {
        let server = echo_server(PUBLIC);
        let port = server.port().to_string();
        env.idle_box("flood", &["--cpus", "2"]);
        let all = env.probe("flood", &["concurrent", "200", &PUBLIC.to_string(), &port]);
        assert!(all.ok().contains("200"), "{all:?}");
        let supervisor = env.inspect("flood")["supervisor_pid"].as_u64().unwrap();
        let fds = || {
            std::fs::read_dir(format!("/proc/{supervisor}/fd"))
                .unwrap()
                .count()
        };
        let before = fds();
        let flood = env.probe("flood", &["synflood", &PUBLIC.to_string(), &port, "20000"]);
        assert!(flood.success, "{flood:?}");
        let during = fds();
        // The stack holds at most its pending-connect and flow caps of host sockets.
        assert!(during < before + 600, "{before} -> {during} descriptors");
        // And the box is still usable.
        let after = env.probe(
            "flood",
            &[
                "connect",
                &PUBLIC.to_string(),
                &port,
                "--send",
                "still-here",
            ],
        );
        assert!(after.ok().contains("still-here"), "{after:?}");
    });
}
