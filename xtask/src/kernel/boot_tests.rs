//! Boots the built guest kernel under QEMU (`-M microvm`, TCG) with a one-program initramfs.
//!
//! `cargo xtask test` builds the kernel first and exports `BOXLITE_KERNEL_DIR`; a plain
//! `cargo test` skips these tests with a reason.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cpio;

/// The line the test /init writes to the console.
const HELLO: &str = "boxlite-init: hello";
/// Generous: TCG on a loaded 2-core machine, where a boot normally takes 1-2 s.
const DEADLINE: Duration = Duration::from_secs(180);
/// Console bytes shown when a boot fails.
const TAIL: usize = 4000;

/// A freestanding /init: print a line on the console, then reboot, which with `reboot=t` and
/// QEMU's `-no-reboot` ends QEMU with status 0.
const INIT_C: &str = r#"
static long sys(long n, long a, long b, long c, long d) {
    register long r10 __asm__("r10") = d;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
}

__attribute__((force_align_arg_pointer, noreturn)) void _start(void) {
    static const char msg[] = "boxlite-init: hello\n";
    long fd = sys(2 /* open */, (long)"/dev/console", 01 /* O_WRONLY */ | 0400 /* O_NOCTTY */, 0, 0);
    if (fd < 0)
        fd = 1;
    sys(1 /* write */, fd, (long)msg, sizeof msg - 1, 0);
    /* reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART) */
    sys(169, 0xfee1dead, 672274793, 0x01234567, 0);
    for (;;)
        sys(34 /* pause */, 0, 0, 0, 0);
}
"#;

/// A static /init (glibc) that checks the guest features one by one; see the file.
const PROBE_C: &str = include_str!("probe.c");

fn kernel_dir() -> Option<PathBuf> {
    match std::env::var_os("BOXLITE_KERNEL_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            eprintln!(
                "skipped: no guest kernel; run via `cargo xtask test`, or set BOXLITE_KERNEL_DIR \
                 (e.g. to the output of `cargo xtask kernel --print-path`)"
            );
            None
        }
    }
}

/// Compiles `source` as a static /init with `flags` and packs it with /dev/console into a
/// gzip newc initramfs.
fn initramfs(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(format!("{name}.cpio.gz"));
    let mut a = cpio::gzip(std::fs::File::create(&path).unwrap());
    a.dir("dev", 0o755).unwrap();
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    a.file("init", 0o755, &std::fs::read(&bin).unwrap())
        .unwrap();
    a.finish().unwrap().finish().unwrap().sync_all().unwrap();
    path
}

/// Boots `kernel` with `devices` (extra QEMU arguments) until it powers off; returns the
/// wall-clock time from starting QEMU to the first console line containing `marker`, and
/// the whole console output.
fn boot(kernel: &Path, initrd: &Path, devices: &[OsString], marker: &str) -> (Duration, String) {
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm,acpi=off", "-accel", "tcg", "-m", "256"])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 reboot=t panic=-1 quiet"])
        .args(devices)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu-system-x86_64 (Debian package qemu-system-x86)");
    let console = Arc::new(Mutex::new(Vec::new()));
    let seen: Arc<Mutex<Option<Duration>>> = Arc::default();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut pipe| {
        let (console, seen, marker) = (console.clone(), seen.clone(), marker.to_owned());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let mut c = console.lock().unwrap();
                c.extend_from_slice(&buf[..n]);
                let mut s = seen.lock().unwrap();
                if s.is_none() && String::from_utf8_lossy(&c).contains(&marker) {
                    *s = Some(start.elapsed());
                }
            }
        })
    })
    .collect();
    let tail = |console: &Mutex<Vec<u8>>| {
        let c = console.lock().unwrap();
        String::from_utf8_lossy(&c[c.len().saturating_sub(TAIL)..]).into_owned()
    };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not finish within {DEADLINE:?}; console tail:\n{}",
                kernel.display(),
                tail(&console)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for r in readers {
        r.join().unwrap();
    }
    let seen = *seen.lock().unwrap();
    let Some(at) = seen else {
        panic!(
            "{} never printed {marker:?} (QEMU {status}); console tail:\n{}",
            kernel.display(),
            tail(&console)
        );
    };
    assert!(
        status.success(),
        "QEMU exited with {status} after /init rebooted; console tail:\n{}",
        tail(&console)
    );
    let console = String::from_utf8_lossy(&console.lock().unwrap()).into_owned();
    (at, console)
}

#[test]
fn pvh_vmlinux_and_bzimage_boot_to_init_under_tcg() {
    let Some(dir) = kernel_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let initrd = initramfs(
        tmp.path(),
        "hello",
        INIT_C,
        &[
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
        ],
    );
    // One after the other, so the timings do not compete for the CPUs.
    for image in ["vmlinux", "bzImage"] {
        let kernel = dir.join(image);
        assert!(
            kernel.is_file(),
            "{} is missing; rebuild with `cargo xtask kernel`",
            kernel.display()
        );
        let (at, _) = boot(&kernel, &initrd, &[], HELLO);
        eprintln!("{image}: /init spoke after {at:.2?} (wall clock, QEMU TCG)");
    }
}

#[test]
fn guest_features_work_on_virtio_mmio_devices() {
    let Some(dir) = kernel_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let initrd = initramfs(tmp.path(), "probe", PROBE_C, &[]);
    // The ext4 image the probe mounts from virtio-blk and stacks an overlay on.
    let content = tmp.path().join("content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("hello"), "from-host\n").unwrap();
    let disk = tmp.path().join("disk.ext4");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&disk)
        .arg("8M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hvc = tmp.path().join("hvc.txt");
    let mut drive = OsString::from("id=d0,format=raw,if=none,file=");
    drive.push(&disk);
    let mut chardev = OsString::from("file,id=c0,path=");
    chardev.push(&hvc);
    let devices: Vec<OsString> = [
        "-drive".into(),
        drive,
        "-device".into(),
        "virtio-blk-device,drive=d0".into(),
        "-netdev".into(),
        "user,id=n0".into(),
        "-device".into(),
        "virtio-net-device,netdev=n0".into(),
        "-device".into(),
        "virtio-rng-device".into(),
        "-device".into(),
        "virtio-serial-device".into(),
        "-chardev".into(),
        chardev,
        "-device".into(),
        "virtconsole,chardev=c0".into(),
    ]
    .into();
    let (_, console) = boot(&dir.join("vmlinux"), &initrd, &devices, "probe: done");
    let failed: Vec<&str> = console.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed.is_empty(),
        "guest checks failed:\n{}\nconsole:\n{console}",
        failed.join("\n")
    );
    // Each device sits on the virtio-mmio bus with its driver bound (ids from the virtio spec).
    for bound in [
        "virtio 0x0001 virtio_net",
        "virtio 0x0002 virtio_blk",
        "virtio 0x0003 virtio_console",
        "virtio 0x0004 virtio_rng",
    ] {
        assert!(
            console.lines().any(|l| l == bound),
            "no `{bound}` line; console:\n{console}"
        );
    }
    let oks = console.lines().filter(|l| l.starts_with("ok ")).count();
    assert!(
        oks >= 30,
        "only {oks} checks reported ok; console:\n{console}"
    );
    // The tty layer turns "\n" into "\r\n" (ONLCR) on the way out.
    assert_eq!(std::fs::read_to_string(&hvc).unwrap(), "boxlite-hvc\r\n");
}
