//! `cargo xtask nested-kvm`: proves `boxlite-vmm` boots Linux on a host without hardware KVM.
//!
//! Where /dev/kvm is missing or is the paravirtual `kvm_pvm` (which cannot run an unmodified
//! Linux), a real KVM is made under emulation: QEMU's TCG emulates an AMD CPU with SVM, an L1
//! Linux (Debian's kernel, downloaded from the archive and not installed) loads `kvm` and
//! `kvm_amd` on it, and inside L1 the vmm crate's full-boot test (`crates/vmm/tests/boot.rs`)
//! boots our guest kernel and agent (L2) under `boxlite-vmm` with two ext4 disks, shakes
//! hands with the agent, runs a command and powers off. Slow (two layers of emulation) but
//! real: the same KVM code paths as on hardware, with no PVM shortcuts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cpio, deps, guest, image, kernel, sh};

/// How long L1 may run: both tests take well under a minute on an idle host; a loaded one
/// may take several times that.
const L1_TIMEOUT: Duration = Duration::from_secs(600);

/// The kernel modules L1 loads (its `/init` loads them in dependency order): KVM, and ext4
/// on a RAM disk for `/tmp`, because the runtime keeps `user.*` xattrs on what it unpacks
/// and this kernel's tmpfs has none (they came in 6.6).
const MODULES: [&str; 10] = [
    "virt/lib/irqbypass.ko",
    "drivers/crypto/ccp/ccp.ko",
    "arch/x86/kvm/kvm.ko",
    "arch/x86/kvm/kvm-amd.ko",
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "crypto/crc32c_generic.ko",
    "fs/ext4/ext4.ko",
    "drivers/block/brd.ko",
];

/// What the L1 init prints last: whether the test passed.
const RESULT_MARK: &str = "NESTED-RESULT: ";

/// `cargo xtask nested-kvm` options.
#[derive(clap::Args)]
pub struct Args {
    /// Load kvm_amd with nested paging (`npt=1`, faster) or shadow paging (`npt=0`).
    #[arg(long, default_value_t = 1)]
    pub npt: u8,
}

impl Default for Args {
    fn default() -> Args {
        Args { npt: 1 }
    }
}

/// Whether this host has hardware KVM (then the full-boot test runs directly, no L1 needed):
/// /dev/kvm exists and is not the paravirtual `kvm_pvm`.
pub fn hardware_kvm() -> bool {
    Path::new("/dev/kvm").exists() && !Path::new("/sys/module/kvm_pvm").exists()
}

/// Builds everything, runs L1, and fails unless the full-boot test passed inside it.
pub fn run(args: Args) -> Result<()> {
    deps::ensure(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mkfs.ext4", "e2fsprogs"),
    ])?;
    let l1 = l1_kernel()?;
    let kernel_dir = kernel::build(&kernel::Args::default())?;
    let agent = guest::build()?;
    let test = boot_test()?;
    let virtiofsd = crate::virtiofsd::ensure()?;
    let work = tempfile::Builder::new().prefix("nested-kvm").tempdir()?;
    let initramfs = work.path().join("l1.cpio.gz");
    pack_l1(
        &l1,
        &kernel_dir.join("bzImage"),
        &agent.initramfs,
        &test,
        &agent.netprobe,
        &virtiofsd,
        &initramfs,
    )?;
    for attempt in 1..=ATTEMPTS {
        let log = work.path().join(format!("l1-{attempt}.log"));
        let (status, text) = run_l1(&l1.vmlinuz, &initramfs, &log, args.npt)?;
        if text.contains(&format!("{RESULT_MARK}pass")) {
            return Ok(());
        }
        // Only a wedged L1 (QEMU's emulated SVM stops making progress; seen with npt=0) is
        // tried again; a test that fails, fails.
        if status.code() == Some(TIMED_OUT) && attempt < ATTEMPTS {
            eprintln!(
                "L1 made no progress for {} s; trying once more",
                L1_TIMEOUT.as_secs()
            );
            continue;
        }
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the full-boot test did not pass inside L1; the end of its console:\n{}",
            tail.join("\n")
        );
    }
    Ok(())
}

/// How often L1 is started when it times out without an answer.
const ATTEMPTS: u32 = 2;

/// `timeout(1)`'s status when it had to stop the command.
const TIMED_OUT: i32 = 124;

/// Runs L1 once; QEMU's status and the console it wrote, after printing the lines that tell
/// how far it got.
fn run_l1(
    vmlinuz: &Path,
    initramfs: &Path,
    log: &Path,
    npt: u8,
) -> Result<(std::process::ExitStatus, String)> {
    eprintln!("running L1 under TCG (SVM emulated), kvm_amd npt={npt}");
    let start = Instant::now();
    let mut qemu = Command::new("timeout");
    qemu.arg(L1_TIMEOUT.as_secs().to_string())
        .args([
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-M",
            "q35",
        ])
        .args(["-m", "3072", "-smp", "1", "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1 rdinit=/init l1.npt={npt}"
        ));
    let status = qemu.status().context("starting qemu-system-x86_64")?;
    let took = start.elapsed();
    let text = fs::read_to_string(log).unwrap_or_default();
    for line in text.lines().filter(|l| {
        [
            "L1:",
            "SVM:",
            "handshake after",
            "report:",
            "test result",
            "kvm engine boot",
            "panicked",
            "boxlite-vmm",
            RESULT_MARK,
        ]
        .iter()
        .any(|m| l.contains(m))
    }) {
        println!("{line}");
    }
    println!("L1 ran {:.1} s (QEMU: {status})", took.as_secs_f64());
    Ok((status, text))
}

/// The L1 kernel: Debian's current `linux-image-*-amd64` (KVM as modules), cached by version.
struct L1Kernel {
    vmlinuz: PathBuf,
    modules: PathBuf,
    busybox: PathBuf,
}

fn l1_kernel() -> Result<L1Kernel> {
    let depends = sh::output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .context("apt-cache names no linux-image-*-amd64 behind linux-image-amd64")?
        .to_string();
    let version = package.trim_start_matches("linux-image-").to_string();
    let dir = image::cache_dir().join("nested").join(&version);
    let kernel = L1Kernel {
        vmlinuz: dir.join(format!("k/boot/vmlinuz-{version}")),
        modules: dir.join(format!("k/lib/modules/{version}/kernel")),
        busybox: dir.join("bb/bin/busybox"),
    };
    if kernel.vmlinuz.is_file() && kernel.busybox.is_file() {
        return Ok(kernel);
    }
    // Fetched and unpacked aside, renamed into place whole.
    let parent = image::cache_dir().join("nested");
    fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".fetch")
        .tempdir_in(&parent)?;
    sh::run(
        Command::new("apt-get")
            .args(["download", &package, "busybox-static"])
            .current_dir(tmp.path()),
    )?;
    for entry in fs::read_dir(tmp.path())? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let into = if name.starts_with("busybox") {
            "bb"
        } else {
            "k"
        };
        sh::run(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(&path)
                .arg(tmp.path().join(into)),
        )?;
    }
    let _ = fs::remove_dir_all(&dir);
    fs::rename(tmp.keep(), &dir).with_context(|| format!("moving into {}", dir.display()))?;
    Ok(kernel)
}

/// The tests L1 runs and the programs they start.
struct BootTest {
    /// The vmm crate's full-boot test.
    executable: PathBuf,
    /// The runtime's end-to-end tests (its kvm-engine test runs in L1).
    runtime: PathBuf,
    /// `boxlite-vmm`, at the path the vmm test was compiled with.
    vmm: PathBuf,
    /// `boxlite-supervisor`, at the path the runtime tests were compiled with.
    supervisor: PathBuf,
}

fn boot_test() -> Result<BootTest> {
    sh::run(sh::cargo().args(["build", "-p", "vmm", "-p", "boxlite", "--bins"]))?;
    let debug = crate::demo::target_dir().join("debug");
    Ok(BootTest {
        executable: test_executable("vmm", "boot")?,
        runtime: test_executable("boxlite", "boxes")?,
        vmm: debug.join("boxlite-vmm"),
        supervisor: debug.join("boxlite-supervisor"),
    })
}

/// Builds integration test `test` of `package`; its executable.
fn test_executable(package: &str, test: &str) -> Result<PathBuf> {
    let json = sh::output(sh::cargo().args([
        "test",
        "-p",
        package,
        "--test",
        test,
        "--no-run",
        "--message-format=json",
    ]))?;
    json.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"]["name"] == test)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built no `{test}` test executable for {package}"))
}

/// Packs L1's initramfs: busybox, the KVM modules, the test and what it runs (at the paths
/// it expects, shared libraries included), our guest kernel and agent, and `/init`.
fn pack_l1(
    l1: &L1Kernel,
    l2_kernel: &Path,
    l2_initramfs: &Path,
    test: &BootTest,
    netprobe: &Path,
    virtiofsd: &Path,
    out: &Path,
) -> Result<()> {
    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    let mut add = |inside: &str, mode: u32, data: Vec<u8>| {
        files.insert(inside.trim_start_matches('/').to_string(), (mode, data));
    };
    add("bin/busybox", 0o755, fs::read(&l1.busybox)?);
    for module in MODULES {
        let name = Path::new(module)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        add(
            &format!("mod/{name}"),
            0o644,
            fs::read(l1.modules.join(module)).with_context(|| format!("module {module}"))?,
        );
    }
    add("l2/bzImage", 0o644, fs::read(l2_kernel)?);
    add("l2/initramfs", 0o644, fs::read(l2_initramfs)?);
    add(
        "etc/mke2fs.conf",
        0o644,
        fs::read("/etc/mke2fs.conf").unwrap_or_default(),
    );
    // The runtime test builds its image from these host programs (as on the host): the
    // list of `tools_image` in crates/boxlite/tests/support/mod.rs.
    let mut programs: Vec<(PathBuf, String)> = [
        "/bin/dash",
        "/usr/bin/cat",
        "/usr/bin/echo",
        "/usr/bin/sleep",
        "/usr/bin/ls",
        "/usr/bin/head",
        "/usr/bin/sha256sum",
        "/usr/bin/true",
        "/usr/bin/test",
        "/usr/bin/sync",
        "/usr/bin/seq",
        "/usr/bin/chmod",
        "/usr/bin/mknod",
        "/usr/bin/mkfifo",
        "/usr/bin/mkdir",
    ]
    .iter()
    .map(|p| (PathBuf::from(p), p.to_string()))
    .collect();
    programs.extend([
        (test.runtime.clone(), "bin/runtime-test".into()),
        (
            test.supervisor.clone(),
            test.supervisor.display().to_string(),
        ),
        (test.vmm.clone(), "bin/boxlite-vmm".into()),
        (netprobe.to_path_buf(), "bin/netprobe".into()),
        (virtiofsd.to_path_buf(), "bin/virtiofsd".into()),
    ]);
    let fixed: [(&Path, String); 5] = [
        (&test.executable, "bin/boot-test".into()),
        // The test runs `boxlite-vmm` at the absolute path cargo compiled into it.
        (&test.vmm, test.vmm.display().to_string()),
        (Path::new("/sbin/mke2fs"), "sbin/mkfs.ext4".into()),
        (Path::new("/bin/dash"), "bin/dash".into()),
        (Path::new("/usr/bin/cat"), "usr/bin/cat".into()),
    ];
    let fixed = fixed.map(|(host, inside)| (host.to_path_buf(), inside));
    for (host, inside) in programs.into_iter().chain(fixed) {
        add(
            &inside,
            0o755,
            fs::read(&host).with_context(|| format!("reading {}", host.display()))?,
        );
        for lib in shared_libraries(&host)? {
            let data = fs::read(&lib)?;
            add(&lib.display().to_string(), 0o755, data);
        }
    }
    add("init", 0o755, L1_INIT.as_bytes().to_vec());
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut archive = cpio::gzip(file);
    let mut made = std::collections::BTreeSet::new();
    let mut dir = |archive: &mut cpio::Archive<_>, path: &str| -> Result<()> {
        // Each directory once, parents first.
        let mut at = String::new();
        for part in path.split('/') {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            if made.insert(at.clone()) {
                archive.dir(&at, 0o755)?;
            }
        }
        Ok(())
    };
    for path in ["proc", "sys", "dev", "tmp", "root", "usr/bin", "sbin"] {
        dir(&mut archive, path)?;
    }
    for (path, (mode, data)) in &files {
        if let Some((parent, _)) = path.rsplit_once('/') {
            dir(&mut archive, parent)?;
        }
        archive.file(path, *mode, data)?;
    }
    archive.finish()?;
    Ok(())
}

/// The shared libraries `elf` loads, as `ldd` lists them.
fn shared_libraries(elf: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(elf)
        .output()
        .context("running ldd")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

/// L1's `/init`: mount, load KVM, run the full-boot test, say how it went, power off.
const L1_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
# Programs packed at their host paths under /tmp (from a checkout there) would be hidden by
# the filesystems mounted on /tmp: set aside here, copied onto the last one below.
mv /tmp /tmp.packed && mkdir /tmp && mount -t tmpfs tmp /tmp
printf '#!/bin/sh\nexec /lib64/ld-linux-x86-64.so.2 --list "$@"\n' > /usr/bin/ldd; chmod +x /usr/bin/ldd
NPT=1
for w in $(cat /proc/cmdline); do case $w in l1.npt=*) NPT=${w#l1.npt=};; esac; done
ip link set lo up
echo "L1: up at $(cut -d' ' -f1 /proc/uptime)s"
for m in irqbypass ccp kvm; do insmod /mod/$m.ko; done
insmod /mod/kvm-amd.ko npt=$NPT nested=0
echo "L1: kvm_amd npt=$NPT loaded: $(ls /dev/kvm)"
for m in crc16 mbcache jbd2 crc32c_generic ext4; do insmod /mod/$m.ko; done
insmod /mod/brd.ko rd_nr=1 rd_size=1048576
mkfs.ext4 -q /dev/ram0 && mount -t ext4 /dev/ram0 /tmp && echo "L1: /tmp is ext4 on a RAM disk"
cp -a /tmp.packed/. /tmp/
RESULT=fail
export BOXLITE_KERNEL_DIR=/l2 BOXLITE_GUEST_INITRAMFS=/l2/initramfs
/bin/boot-test --nocapture --test-threads 1 && RESULT=pass
# The runtime's kvm engine end to end: a box from an image, booted by boxlite-vmm.
BOXLITE_VMM=/bin/boxlite-vmm /bin/runtime-test --exact the_kvm_engine_boots_a_box_on_hardware_kvm \
  --nocapture --test-threads 1 || RESULT=fail
# Its network card: boxlite-vmm's virtio-net on the supervisor's stack, to L1's loopback.
BOXLITE_VMM=/bin/boxlite-vmm BOXLITE_NETPROBE=/bin/netprobe /bin/runtime-test --exact \
  the_kvm_engine_networks_a_box --nocapture --test-threads 1 || RESULT=fail
# Its volumes: memfd guest memory, the vhost-user virtio-fs device driving virtiofsd, and a
# named volume's disk.
BOXLITE_VMM=/bin/boxlite-vmm BOXLITE_VIRTIOFSD=/bin/virtiofsd /bin/runtime-test --exact \
  the_kvm_engine_mounts_volumes --nocapture --test-threads 1 || RESULT=fail
echo "L1: test ended at $(cut -d' ' -f1 /proc/uptime)s"
# A seccomp kill (boxlite-vmm's filters) names the system call here (audit type 1326).
dmesg | grep 'type=1326' | sed 's/^/L1: seccomp: /'
echo "NESTED-RESULT: $RESULT"
poweroff -f
"#;
