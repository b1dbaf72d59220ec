//! Boots the built guest kernel under QEMU (`-M microvm`, TCG) with a one-program initramfs.
//!
//! `cargo xtask test` builds the kernel first and exports `BOXLITE_KERNEL_DIR`; a plain
//! `cargo test` skips these tests with a reason.

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

/// Compiles the test /init and packs it with /dev/console into a gzip newc initramfs.
fn initramfs(dir: &Path) -> PathBuf {
    let src = dir.join("init.c");
    let bin = dir.join("init");
    std::fs::write(&src, INIT_C).unwrap();
    let out = Command::new("gcc")
        .args([
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-O2",
            "-o",
        ])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("initramfs.cpio.gz");
    let mut a = cpio::gzip(std::fs::File::create(&path).unwrap());
    a.dir("dev", 0o755).unwrap();
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    a.file("init", 0o755, &std::fs::read(&bin).unwrap())
        .unwrap();
    a.finish().unwrap().finish().unwrap().sync_all().unwrap();
    path
}

/// Boots `kernel`; returns the wall-clock time from starting QEMU to the /init line.
fn boot(kernel: &Path, initrd: &Path) -> Duration {
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
        let (console, seen) = (console.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let mut c = console.lock().unwrap();
                c.extend_from_slice(&buf[..n]);
                let mut s = seen.lock().unwrap();
                if s.is_none() && String::from_utf8_lossy(&c).contains(HELLO) {
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
            "{} never printed {HELLO:?} (QEMU {status}); console tail:\n{}",
            kernel.display(),
            tail(&console)
        );
    };
    assert!(
        status.success(),
        "QEMU exited with {status} after /init rebooted; console tail:\n{}",
        tail(&console)
    );
    at
}

#[test]
fn pvh_vmlinux_and_bzimage_boot_to_init_under_tcg() {
    let Some(dir) = kernel_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let initrd = initramfs(tmp.path());
    // One after the other, so the timings do not compete for the CPUs.
    for image in ["vmlinux", "bzImage"] {
        let kernel = dir.join(image);
        assert!(
            kernel.is_file(),
            "{} is missing; rebuild with `cargo xtask kernel`",
            kernel.display()
        );
        let at = boot(&kernel, &initrd);
        eprintln!("{image}: /init spoke after {at:.2?} (wall clock, QEMU TCG)");
    }
}
