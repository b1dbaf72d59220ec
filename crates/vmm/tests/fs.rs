//! virtio-fs against a real virtiofsd: guest memory is the shared memfd the daemon maps, the
//! transport is programmed through its registers from a thread with the vCPU seccomp filter,
//! the event loop runs on a thread with the device filter (in the child process of
//! [`every_fs_test_runs_under_the_seccomp_filters`]), and FUSE requests laid in the request
//! queue come back answered by the daemon: FUSE_INIT, LOOKUP, OPEN and READ of a file in the
//! shared directory. A killed daemon leaves the device needing a reset, never a panic, a
//! hang or a spinning device thread.
//!
//! virtiofsd comes from `BOXLITE_VIRTIOFSD` (`cargo xtask test` sets it), else from the
//! xtask cache; without either the tests are skipped with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{DATA, NEXT, WRITE, ring_base};
use vm_memory::{Bytes, GuestAddress};
use vmm::bus::BusDevice;
use vmm::devices::irq::IrqLine;
use vmm::devices::virtio::fs::{Fs, QUEUE_SIZE};
use vmm::devices::virtio::interrupt::USED_BUFFER;
use vmm::devices::virtio::mmio::{MmioTransport, reg, status};
use vmm::devices::virtio::{F_VERSION_1, Interrupt, device_type};
use vmm::event_loop::{EventLoop, SharedTransport};
use vmm::memory::{self, GuestMemory};
use vmm::seccomp::{Filters, Thread};
use vmm_sys_util::eventfd::EventFd;

/// Where `cargo xtask` caches the virtiofsd it builds.
const CACHED_VIRTIOFSD: &str = "/root/.cache/boxlite-xtask/virtiofsd/1.14.0/bin/virtiofsd";
/// Set in the child process of [`every_fs_test_runs_under_the_seccomp_filters`].
const SECCOMP: &str = "VMM_FS_SECCOMP";
/// How long the daemon may take to start, or to answer one request.
const DEADLINE: Duration = Duration::from_secs(10);
const TAG: &str = "shared";
const FILE: &str = "hello.txt";
const CONTENT: &[u8] = b"hello from the host, through virtiofsd\n";
/// The queue size the test driver sets (the device offers more).
const SIZE: u16 = 256;
const HIPRIO: usize = 0;
const REQUESTS: usize = 1;

fn virtiofsd() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BOXLITE_VIRTIOFSD") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BOXLITE_VIRTIOFSD={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let cached = PathBuf::from(CACHED_VIRTIOFSD);
    if cached.is_file() {
        return Some(cached);
    }
    eprintln!(
        "skipped: no virtiofsd (set BOXLITE_VIRTIOFSD, as `cargo xtask test` does, or build \
         it into {CACHED_VIRTIOFSD})"
    );
    None
}

fn seccomp_on() -> bool {
    std::env::var_os(SECCOMP).is_some()
}

/// Every test of this file again, in a child process where the register writes run on a
/// thread with boxlite-vmm's vCPU filter and the event loop with its device filter: a
/// system call missing from a list would kill the child with SIGSYS.
#[test]
fn every_fs_test_runs_under_the_seccomp_filters() {
    if seccomp_on() || virtiofsd().is_none() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--test-threads=1", "--skip", "every_fs_test_runs_under"])
        .env(SECCOMP, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("test result: ok"), "{stdout}");
}

/// A virtiofsd serving a temporary directory that holds [`FILE`].
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(bin: &Path) -> (Daemon, UnixStream) {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join(FILE), CONTENT).unwrap();
        let socket = dir.path().join("virtiofsd.sock");
        let log = std::fs::File::create(dir.path().join("virtiofsd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--socket-path")
            .arg(&socket)
            .arg("--shared-dir")
            .arg(&shared)
            .args(["--tag", TAG, "--sandbox", "none", "--seccomp", "none"])
            .args(["--cache", "auto"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, dir };
        let start = Instant::now();
        loop {
            match UnixStream::connect(&socket) {
                Ok(s) => return (daemon, s),
                Err(e) if start.elapsed() > DEADLINE => {
                    panic!("connecting to virtiofsd: {e}\n{}", daemon.log())
                }
                Err(_) => {
                    if let Ok(Some(status)) = daemon.child.try_wait() {
                        panic!("virtiofsd exited: {status}\n{}", daemon.log());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("virtiofsd.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The device behind its transport, the event loop on its thread, and a driver's view of
/// the rings.
struct Vm {
    mem: GuestMemory,
    t: SharedTransport,
    interrupt: Arc<Interrupt>,
    filters: Option<Arc<Filters>>,
    stop: Arc<EventFd>,
    devices: Option<JoinHandle<()>>,
    devices_tid: i32,
    avail_idx: [u16; 2],
    next_desc: [u16; 2],
    used_seen: [u16; 2],
    unique: u64,
}

impl Vm {
    fn new(socket: UnixStream) -> Vm {
        let mem = memory::create_shared(32).unwrap();
        let fs = Fs::new(socket, TAG).unwrap();
        let interrupt = Arc::new(Interrupt::new(IrqLine::new(5).unwrap()));
        let t = MmioTransport::new(Box::new(fs), mem.clone(), interrupt.clone()).unwrap();
        let sockets: Vec<_> = t.vhost_user_socket().into_iter().collect();
        let t = Arc::new(Mutex::new(t));
        let filters = seccomp_on().then(|| Arc::new(Filters::build_for(&sockets).unwrap()));
        let mut event_loop = EventLoop::new(vec![t.clone()]).unwrap();
        let stop = event_loop.stopper();
        let (tid_tx, tid_rx) = mpsc::channel();
        let loop_filters = filters.clone();
        let devices = std::thread::spawn(move || {
            if let Some(f) = &loop_filters {
                f.install(Thread::Devices).unwrap();
            }
            // SAFETY: gettid(2) has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            event_loop.run().unwrap();
        });
        Vm {
            mem,
            t,
            interrupt,
            filters,
            stop,
            devices: Some(devices),
            devices_tid: tid_rx.recv().unwrap(),
            avail_idx: [0; 2],
            next_desc: [0; 2],
            used_seen: [0; 2],
            unique: 0,
        }
    }

    /// Runs `f` on a fresh thread with the vCPU filter (under seccomp), as the guest's
    /// register writes run on a vCPU thread.
    fn vcpu<T: Send>(&self, f: impl FnOnce(&Vm) -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                if let Some(filters) = &self.filters {
                    filters.install(Thread::Vcpu).unwrap();
                }
                f(self)
            })
            .join()
            .unwrap()
        })
    }

    fn read32(&self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.t.lock().unwrap().read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn write32(&self, offset: u64, v: u32) {
        self.t.lock().unwrap().write(offset, &v.to_le_bytes());
    }

    fn status(&self) -> u32 {
        self.read32(reg::STATUS)
    }

    /// What Linux's virtio_mmio and virtio_fs do up to DRIVER_OK (on a vCPU thread).
    fn init(&self) {
        self.vcpu(|vm| {
            vm.write32(reg::STATUS, 0);
            vm.write32(reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
            vm.write32(reg::DRIVER_FEATURES_SEL, 0);
            vm.write32(reg::DRIVER_FEATURES, 0);
            vm.write32(reg::DRIVER_FEATURES_SEL, 1);
            vm.write32(reg::DRIVER_FEATURES, (F_VERSION_1 >> 32) as u32);
            let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
            vm.write32(reg::STATUS, ok);
            assert_ne!(vm.status() & status::FEATURES_OK, 0);
            for q in [HIPRIO, REQUESTS] {
                vm.setup_queue(q);
            }
            vm.write32(reg::STATUS, ok | status::DRIVER_OK);
        });
    }

    fn setup_queue(&self, q: usize) {
        self.write32(reg::QUEUE_SEL, q as u32);
        assert_eq!(self.read32(reg::QUEUE_NUM_MAX), u32::from(QUEUE_SIZE));
        self.write32(reg::QUEUE_NUM, u32::from(SIZE));
        let base = ring_base(q);
        for (lo, addr) in [
            (reg::QUEUE_DESC_LOW, base),
            (reg::QUEUE_AVAIL_LOW, base + 0x4000),
            (reg::QUEUE_USED_LOW, base + 0x8000),
        ] {
            self.write32(lo, addr as u32);
            self.write32(lo + 4, (addr >> 32) as u32);
        }
        self.write32(reg::QUEUE_READY, 1);
    }

    /// A driver reset, as after a guest reboot: rings cleared, indices back to 0.
    fn reset(&mut self) {
        self.vcpu(|vm| vm.write32(reg::STATUS, 0));
        for q in [HIPRIO, REQUESTS] {
            self.mem
                .write_slice(&[0; 4], GuestAddress(ring_base(q) + 0x4000))
                .unwrap();
            self.mem
                .write_slice(&[0; 4], GuestAddress(ring_base(q) + 0x8000))
                .unwrap();
        }
        self.avail_idx = [0; 2];
        self.next_desc = [0; 2];
        self.used_seen = [0; 2];
    }

    /// Lays out `bufs` (address, length, writable) as one chain and makes it available.
    fn submit(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc[q];
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = (head + i as u16) % SIZE;
            let last = i + 1 == bufs.len();
            let flags = if last { 0 } else { NEXT } | if writable { WRITE } else { 0 };
            let at = ring_base(q) + u64::from(index) * 16;
            self.mem.write_obj(addr, GuestAddress(at)).unwrap();
            self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            self.mem
                .write_obj((index + 1) % SIZE, GuestAddress(at + 14))
                .unwrap();
        }
        self.next_desc[q] = (head + bufs.len() as u16) % SIZE;
        let avail = ring_base(q) + 0x4000;
        let slot = u64::from(self.avail_idx[q] % SIZE);
        self.mem
            .write_obj(head, GuestAddress(avail + 4 + slot * 2))
            .unwrap();
        self.avail_idx[q] = self.avail_idx[q].wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx[q], GuestAddress(avail + 2))
            .unwrap();
        head
    }

    /// Waits for the used-buffer interrupt and returns the next used entry (id, len).
    fn wait_used(&mut self, q: usize) -> Option<(u32, u32)> {
        let used = ring_base(q) + 0x8000;
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            // The interrupt, as the guest's handler sees it: the line, then the status bit.
            if self.interrupt.line().event.read().is_ok() {
                let pending = self.read32(reg::INTERRUPT_STATUS);
                self.write32(reg::INTERRUPT_ACK, pending);
                let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
                if idx != self.used_seen[q] {
                    assert_ne!(pending & USED_BUFFER, 0, "the used-buffer bit is set");
                    let at = used + 4 + u64::from(self.used_seen[q] % SIZE) * 8;
                    self.used_seen[q] = self.used_seen[q].wrapping_add(1);
                    return Some((
                        self.mem.read_obj(GuestAddress(at)).unwrap(),
                        self.mem.read_obj(GuestAddress(at + 4)).unwrap(),
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    /// Sends one FUSE request on the request queue; returns the reply's error and body.
    fn fuse(&mut self, opcode: u32, nodeid: u64, body: &[u8], reply_len: u32) -> (i32, Vec<u8>) {
        self.unique += 1;
        let unique = self.unique;
        let request = fuse_request(opcode, unique, nodeid, body);
        let (req_at, reply_at) = (DATA, DATA + 0x10000);
        self.mem
            .write_slice(&request, GuestAddress(req_at))
            .unwrap();
        let head = self.submit(
            REQUESTS,
            &[
                (req_at, request.len() as u32, false),
                (reply_at, OUT_HEADER_LEN + reply_len, true),
            ],
        );
        self.write32(reg::QUEUE_NOTIFY, REQUESTS as u32);
        let (id, len) = self
            .wait_used(REQUESTS)
            .unwrap_or_else(|| panic!("no reply to FUSE opcode {opcode} in {DEADLINE:?}"));
        assert_eq!(id, u32::from(head), "the reply returns our chain");
        let mut out = vec![0u8; len as usize];
        self.mem
            .read_slice(&mut out, GuestAddress(reply_at))
            .unwrap();
        assert!(len >= OUT_HEADER_LEN, "a fuse_out_header at least: {len}");
        let out_len = u32::from_le_bytes(out[0..4].try_into().unwrap());
        let error = i32::from_le_bytes(out[4..8].try_into().unwrap());
        let out_unique = u64::from_le_bytes(out[8..16].try_into().unwrap());
        assert_eq!((out_len, out_unique), (len, unique), "fuse_out_header");
        (error, out[OUT_HEADER_LEN as usize..].to_vec())
    }

    /// The device thread's CPU time so far, in clock ticks (/proc's utime + stime).
    fn devices_cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{}/stat", self.devices_tid)).unwrap();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(d) = self.devices.take() {
            let _ = d.join();
        }
    }
}

const IN_HEADER_LEN: usize = 40;
const OUT_HEADER_LEN: u32 = 16;
const FUSE_LOOKUP: u32 = 1;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_INIT: u32 = 26;
const ROOT: u64 = 1;

/// `fuse_in_header` (len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding),
/// then `body`.
fn fuse_request(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(IN_HEADER_LEN + body.len());
    r.extend_from_slice(&((IN_HEADER_LEN + body.len()) as u32).to_le_bytes());
    r.extend_from_slice(&opcode.to_le_bytes());
    r.extend_from_slice(&unique.to_le_bytes());
    r.extend_from_slice(&nodeid.to_le_bytes());
    r.extend_from_slice(&[0; 16]); // uid, gid, pid: root; no extensions
    r.extend_from_slice(body);
    r
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// FUSE_INIT as Linux 5.4 sends it (protocol 7.31, no extended flags).
fn fuse_init(vm: &mut Vm) {
    let mut init_in = Vec::new();
    for v in [7u32, 31, 0x20000, 0] {
        init_in.extend_from_slice(&v.to_le_bytes());
    }
    let (error, init_out) = vm.fuse(FUSE_INIT, 0, &init_in, 64);
    assert_eq!(error, 0, "FUSE_INIT");
    assert_eq!(u32_at(&init_out, 0), 7, "FUSE major version");
    assert!(u32_at(&init_out, 4) >= 31, "minor {}", u32_at(&init_out, 4));
}

/// FUSE_LOOKUP of `name` in the root: (error, nodeid, size).
fn lookup(vm: &mut Vm, name: &str) -> (i32, u64, u64) {
    let body = [name.as_bytes(), b"\0"].concat();
    // fuse_entry_out: nodeid, generation, entry/attr valid (+nsec), then fuse_attr.
    let (error, entry) = vm.fuse(FUSE_LOOKUP, ROOT, &body, 128);
    if error != 0 {
        return (error, 0, 0);
    }
    (error, u64_at(&entry, 0), u64_at(&entry, 48))
}

fn read_file(vm: &mut Vm, nodeid: u64) -> Vec<u8> {
    // fuse_open_in: flags (O_RDONLY), open_flags.
    let (error, open_out) = vm.fuse(FUSE_OPEN, nodeid, &[0; 8], 16);
    assert_eq!(error, 0, "FUSE_OPEN");
    let fh = u64_at(&open_out, 0);
    // fuse_read_in: fh, offset, size, read_flags, lock_owner, flags, padding.
    let mut read_in = Vec::new();
    read_in.extend_from_slice(&fh.to_le_bytes());
    read_in.extend_from_slice(&0u64.to_le_bytes());
    read_in.extend_from_slice(&4096u32.to_le_bytes());
    read_in.extend_from_slice(&[0; 20]);
    let (error, data) = vm.fuse(FUSE_READ, nodeid, &read_in, 4096);
    assert_eq!(error, 0, "FUSE_READ");
    data
}

#[test]
fn the_device_offers_the_tag_and_the_daemon_ring_features() {
    let Some(bin) = virtiofsd() else { return };
    let (_daemon, socket) = Daemon::start(&bin);
    let vm = Vm::new(socket);
    assert_eq!(vm.read32(reg::DEVICE_ID), device_type::FS);
    let mut config = [0u8; 40];
    vm.t.lock().unwrap().read(reg::CONFIG, &mut config);
    assert_eq!(&config[..TAG.len()], TAG.as_bytes());
    assert!(config[TAG.len()..36].iter().all(|&b| b == 0));
    assert_eq!(u32_at(&config, 36), 1, "one request queue");
    vm.write32(reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        vm.read32(reg::DEVICE_FEATURES),
        1,
        "VIRTIO_F_VERSION_1 only, above bit 31"
    );
    vm.write32(reg::DEVICE_FEATURES_SEL, 0);
    // virtiofsd implements indirect descriptors and event indices, so the guest may use them.
    assert_eq!(vm.read32(reg::DEVICE_FEATURES), (1 << 28) | (1 << 29));
}

#[test]
fn fuse_init_lookup_open_and_read_through_virtiofsd() {
    let Some(bin) = virtiofsd() else { return };
    let (daemon, socket) = Daemon::start(&bin);
    let mut vm = Vm::new(socket);
    vm.init();
    assert_eq!(
        vm.status() & status::DEVICE_NEEDS_RESET,
        0,
        "{}",
        daemon.log()
    );
    fuse_init(&mut vm);
    let (error, nodeid, size) = lookup(&mut vm, FILE);
    assert_eq!(error, 0, "FUSE_LOOKUP {FILE}");
    assert_ne!(nodeid, 0);
    assert_eq!(size, CONTENT.len() as u64);
    assert_eq!(read_file(&mut vm, nodeid), CONTENT);
    assert_eq!(lookup(&mut vm, "missing").0, -libc::ENOENT);
}

#[test]
fn a_reset_stops_the_rings_and_the_device_starts_again() {
    let Some(bin) = virtiofsd() else { return };
    let (daemon, socket) = Daemon::start(&bin);
    let mut vm = Vm::new(socket);
    vm.init();
    fuse_init(&mut vm);
    vm.reset();
    assert_eq!(vm.status(), 0);
    // A buffer made available while the device is reset is not the daemon's to take.
    vm.mem
        .write_slice(&[0xee; 16], GuestAddress(DATA + 0x10000))
        .unwrap();
    vm.submit(REQUESTS, &[(DATA, 56, false), (DATA + 0x10000, 16, true)]);
    vm.write32(reg::QUEUE_NOTIFY, REQUESTS as u32);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(vm.read(DATA + 0x10000, 16), vec![0xee; 16]);
    vm.reset();
    vm.init();
    assert_eq!(
        vm.status() & status::DEVICE_NEEDS_RESET,
        0,
        "{}",
        daemon.log()
    );
    let (error, nodeid, _) = lookup(&mut vm, FILE);
    assert_eq!(error, 0);
    assert_eq!(read_file(&mut vm, nodeid), CONTENT);
}

#[test]
fn a_killed_daemon_leaves_the_device_needing_a_reset() {
    let Some(bin) = virtiofsd() else { return };
    let (mut daemon, socket) = Daemon::start(&bin);
    let mut vm = Vm::new(socket);
    vm.init();
    fuse_init(&mut vm);
    daemon.kill();
    let start = Instant::now();
    while vm.status() & status::DEVICE_NEEDS_RESET == 0 {
        assert!(start.elapsed() < DEADLINE, "the hangup was noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The guest hears of it through a configuration-change interrupt.
    assert_ne!(vm.read32(reg::INTERRUPT_STATUS) & 2, 0);
    // The device thread stopped watching: it does not spin on the hangup.
    let before = vm.devices_cpu_ticks();
    std::thread::sleep(Duration::from_millis(300));
    let spent = vm.devices_cpu_ticks() - before;
    assert!(
        spent <= 3,
        "the device thread spent {spent} ticks in 300 ms"
    );
    // A request now gets no answer, and a reset and a new start fail cleanly.
    vm.submit(REQUESTS, &[(DATA, 56, false), (DATA + 0x10000, 16, true)]);
    vm.write32(reg::QUEUE_NOTIFY, REQUESTS as u32);
    let start = Instant::now();
    vm.reset();
    vm.init();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no waiting on a dead daemon"
    );
    assert_ne!(vm.status() & status::DEVICE_NEEDS_RESET, 0);
    vm.reset();
    assert_eq!(vm.status(), 0);
}

#[test]
fn a_daemon_that_is_gone_before_the_vm_is_built_is_a_clean_error() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    drop(theirs);
    let err = Fs::new(ours, TAG)
        .err()
        .expect("no device without its daemon");
    let msg = err.to_string();
    // SET_OWNER fails to send, or (when a test beside this one forked while the other end
    // was open) GET_FEATURES finds the connection closed.
    assert!(msg.starts_with("vhost-user backend \"shared\": "), "{msg}");
    assert!(
        msg.contains("SET_OWNER") || msg.contains("GET_FEATURES"),
        "{msg}"
    );
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let err = Fs::new(ours, &"t".repeat(37)).err().unwrap().to_string();
    assert!(err.contains("at most 36"), "{err}");
}

#[test]
fn a_daemon_that_dies_during_the_handshake_is_a_clean_error() {
    use std::io::Read;
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    // It reads SET_OWNER and GET_FEATURES (12-byte headers, no body), then goes away.
    let daemon = std::thread::spawn(move || {
        let mut headers = [0u8; 24];
        theirs.read_exact(&mut headers).unwrap();
        u32::from_le_bytes(headers[12..16].try_into().unwrap())
    });
    let err = Fs::new(ours, TAG)
        .err()
        .expect("no device without an answer");
    assert_eq!(daemon.join().unwrap(), 1, "GET_FEATURES is request 1");
    assert!(err.to_string().contains("GET_FEATURES"), "{err}");
}

impl Vm {
    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}
