//! Boxes end to end: real VMs (the xtask kernel and agent under QEMU; TCG on hosts without
//! hardware KVM) driven through the runtime API. Skipped, with the reason, when the guest
//! kernel and initramfs are not given (see `support::guest`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use boxlite::{BoxCommand, BoxOptions, BoxState, Error, ErrorKind, Needs, RemoveMode};
use support::{Fixture, IMAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn sh(script: &str) -> BoxCommand {
    BoxCommand::new("sh").args(["-c", script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_exec_and_a_disk_that_persists() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let mut options = support::named("life");
    options.env = vec![("BOX_VAR".into(), "from-box".into())];
    let bx = rt.create(options).await.unwrap();
    assert_eq!(bx.info().await.unwrap().state, BoxState::Created);
    bx.start().await.unwrap();
    let info = bx.info().await.unwrap();
    assert_eq!(info.state, BoxState::Running);
    assert!(
        info.engine.as_deref().unwrap().starts_with("qemu"),
        "{info:?}"
    );

    // Output, exit code, the image's and the box's environment and working directory.
    let out = bx
        .exec(
            sh("echo $IMAGE_VAR $BOX_VAR $CMD_VAR; pwd; echo oops >&2; exit 3").env("CMD_VAR", "c"),
        )
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-image from-box c\n/srv\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.status.code, Some(3));

    // A command that does not exist: the agent's error, naming it.
    let err = bx.exec(BoxCommand::new("no-such-cmd")).await.unwrap_err();
    assert!(err.to_string().contains("no-such-cmd"), "{err}");
    // The guest's words never carry a terminal escape into an error message.
    let err = bx
        .exec(BoxCommand::new("evil\x1b]0;owned\x07\x1b[2J"))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(err.contains("evil"), "{err:?}");
    // A NUL byte is refused before anything reaches the guest, naming the field.
    let err = bx.exec(BoxCommand::new("a\0b")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "command",
                ..
            }
        ),
        "{err}"
    );
    let err = bx
        .exec(BoxCommand::new("true").env("K", "v\0w"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidOption { option: "env", .. }),
        "{err}"
    );

    // stdin streams in, and one exec streams while another runs.
    let mut streaming = bx.exec(BoxCommand::new("cat")).await.unwrap();
    let mut stdin = streaming.stdin.take().unwrap();
    let mut stdout = streaming.stdout.take().unwrap();
    stdin.write_all(b"first\n").await.unwrap();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"first\n");
    let other = bx
        .exec(sh("seq 1 3"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(other.stdout, b"1\n2\n3\n");
    // Collected output is bounded: past the limit the command is killed and named.
    let err = bx
        .exec(sh("seq 1 100000"))
        .await
        .unwrap()
        .output_limited(1000)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 1000, .. }), "{err}");
    assert!(err.to_string().contains("stdout"), "{err}");
    stdin.write_all(b"second\n").await.unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"second\n");
    assert!(streaming.wait().await.unwrap().success());

    // Files in and out.
    let host = fx.dir.path().join("host-file");
    std::fs::write(&host, b"payload").unwrap();
    bx.copy_in(&host, "/root/").await.unwrap();
    bx.copy_in(&host, "/root/renamed").await.unwrap();
    let out = bx
        .exec(sh("cat /root/host-file /root/renamed"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"payloadpayload");
    let back = fx.dir.path().join("back");
    bx.copy_out("/etc/os-release", &back).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "NAME=\"e2e tools\"\n"
    );

    // A file written before a stop is there after the next start.
    let out = bx
        .exec(sh("echo kept > /root/note; sync"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let metrics = bx.metrics().await.unwrap();
    assert!(metrics.boot_ms.unwrap() > 0.0);
    assert!(metrics.supervisor_rss_kib.unwrap() > 0);
    bx.stop().await.unwrap();
    let info = bx.info().await.unwrap();
    assert_eq!(info.state, BoxState::Stopped, "{info:?}");
    let err = bx.exec(BoxCommand::new("true")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidState { .. }), "{err}");
    bx.start().await.unwrap();
    let out = bx
        .exec(sh("cat /root/note"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"kept\n");
    let metrics = bx.metrics().await.unwrap();
    assert!(metrics.exec_count >= 1, "{metrics:?}");
    bx.stop_with_grace(Duration::from_secs(5)).await.unwrap();
    rt.remove("life", RemoveMode::IfStopped).await.unwrap();
    assert!(matches!(
        rt.get("life").await.unwrap_err(),
        Error::NoSuchBox(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_of_one_image_are_isolated() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let a = rt.create(support::named("iso-a")).await.unwrap();
    let b = rt.create(support::named("iso-b")).await.unwrap();
    // Two handles starting the same box at once: one boot, both see it running.
    let a_again = rt.get("iso-a").await.unwrap();
    let (started_a, started_b, started_again) = tokio::join!(a.start(), b.start(), a_again.start());
    started_a.unwrap();
    started_b.unwrap();
    started_again.unwrap();
    let out = a
        .exec(sh(
            "echo mine > /root/only-a; cat /proc/sys/kernel/hostname",
        ))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"iso-a\n");
    let out = b
        .exec(sh(
            "cat /proc/sys/kernel/hostname; test -e /root/only-a; echo $?",
        ))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "iso-b\n1\n");

    // A running box is removed only with force, and force kills it.
    let err = rt.remove("iso-a", RemoveMode::IfStopped).await.unwrap_err();
    // The library says what to do in its own terms; the CLI words it as `rm -f`.
    assert!(
        matches!(
            err,
            Error::InvalidState {
                needs: Needs::NotRunning,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("remove it with force"), "{err}");
    let supervisor = a.info().await.unwrap().supervisor_pid.unwrap();
    let vm = a.info().await.unwrap().vm_pid.unwrap();
    rt.remove("iso-a", RemoveMode::Kill).await.unwrap();
    // A grace longer than any clock can count is not a panic: the guest powers off.
    rt.get("iso-b")
        .await
        .unwrap()
        .stop_with_grace(Duration::MAX)
        .await
        .unwrap();
    rt.remove("iso-b", RemoveMode::Kill).await.unwrap();
    assert!(rt.list().await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!support::alive(supervisor) && !support::alive(vm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_main_command_runs_at_start_and_its_end_stops_the_box() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let mut options = support::named("main");
    options.command = vec!["sh".into(), "-c".into(), "echo main-out; exit 7".into()];
    let bx = rt.create(options).await.unwrap();
    bx.start().await.unwrap();
    let info = wait_until_stopped(&bx).await;
    assert_eq!(info.exit_code, Some(7), "{info:?}");
    assert!(info.reason.unwrap().contains("code 7"));
    let console = std::fs::read_to_string(
        fx.home()
            .join("boxes")
            .join(&bx.id()[..16])
            .join("console.log"),
    )
    .unwrap();
    assert!(console.contains("main-out"), "{console}");

    // With auto-remove, the box is gone once its command ends.
    let mut options = BoxOptions::new(IMAGE);
    options.auto_remove = true;
    options.command = vec!["true".into()];
    let bx = rt.create(options).await.unwrap();
    let id = bx.id().to_string();
    bx.start().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while rt.get(&id).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the auto-remove box is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The supervisor removes the row, then moves the files to the trash and deletes them.
    let dir = fx.home().join("boxes").join(&id[..16]);
    while dir.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the auto-remove box's directory is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_stopped(bx: &boxlite::LiteBox) -> boxlite::BoxInfo {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let info = bx.info().await.unwrap();
        if !info.state.is_active() {
            return info;
        }
        assert!(std::time::Instant::now() < deadline, "still {}", info.state);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();

    // Not here, and not pulled (tests reach no registry but their own).
    let mut missing = BoxOptions::new("no-such-image");
    missing.pull = boxlite::PullPolicy::Never;
    let err = rt.create(missing).await.unwrap_err();
    assert!(err.to_string().contains("no-such-image"), "{err}");
    // Not here, and its registry is not there: both said.
    let err = rt
        .create(BoxOptions::new("127.0.0.1:1/no/such"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no image named 127.0.0.1:1/no/such here, and pulling it failed")
            && text.contains("reaching registry 127.0.0.1:1"),
        "{text}"
    );

    let mut options = BoxOptions::new(IMAGE);
    options.memory_mib = u32::MAX;
    let err = rt.create(options).await.unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");

    let mut options = BoxOptions::new(IMAGE);
    options.cpus = 0;
    let err = rt.create(options).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidOption { option: "cpus", .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // NUL bytes are refused at create, naming the field.
    for (field, options) in [
        ("user", {
            let mut o = BoxOptions::new(IMAGE);
            o.user = Some("ro\0ot".into());
            o
        }),
        ("env", {
            let mut o = BoxOptions::new(IMAGE);
            o.env = vec![("A".into(), "x\0y".into())];
            o
        }),
        ("command", {
            let mut o = BoxOptions::new(IMAGE);
            o.command = vec!["sh\0".into()];
            o
        }),
    ] {
        let err = rt.create(options).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidOption { option, .. } if *option == field),
            "{field}: {err}"
        );
    }
    // More vCPUs than the engine runs: refused at create (boxlite-vmm's limit is 32; the
    // engine is forced so that the limit, not kvm_pvm, is what refuses).
    let mut forced = fx.options();
    forced.vmm = Some("/bin/true".into());
    forced.force_kvm = true;
    let rt_kvm = boxlite::Runtime::open(forced).unwrap();
    let mut options = BoxOptions::new(IMAGE);
    options.engine = boxlite::EngineKind::Kvm;
    options.cpus = 33;
    let err = rt_kvm.create(options).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidOption { option: "cpus", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("at most 32"), "{err}");

    let options = support::named("taken");
    rt.create(options.clone()).await.unwrap();
    let err = rt.create(options).await.unwrap_err();
    assert!(matches!(err, Error::NameInUse(..)), "{err}");

    // The kvm engine where KVM is the paravirtual kvm_pvm: refused, pointing to qemu.
    if !boxlite::internals::probe_kvm().is_hardware() {
        let mut options = BoxOptions::new(IMAGE);
        options.engine = boxlite::EngineKind::Kvm;
        let err = rt.create(options).await.unwrap_err();
        // Typed, so that the CLI can point to `--engine qemu`.
        assert!(
            matches!(&err, Error::EngineUnavailable { engine, .. } if engine == "kvm"),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }

    // A kernel that is not there.
    let mut no_kernel = fx.options();
    no_kernel.kernel = Some(fx.dir.path().join("no-kernel"));
    let rt2 = boxlite::Runtime::open(no_kernel).unwrap();
    let err = rt2.get("taken").await.unwrap().start().await.unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    assert!(err.to_string().contains("kernel"), "{err}");

    // A guest that does not answer in time: a boot error, and the box is not left running.
    let mut impatient = fx.options();
    impatient.boot_timeout = Duration::from_millis(1);
    let rt4 = boxlite::Runtime::open(impatient).unwrap();
    let bx = rt4.get("taken").await.unwrap();
    let err = bx.start().await.unwrap_err();
    assert!(err.to_string().contains("did not answer within"), "{err}");
    assert!(!bx.info().await.unwrap().state.is_active());

    // A kernel that is not a kernel: the error quotes what the VM said.
    let mut bad_kernel = fx.options();
    let garbage = fx.dir.path().join("garbage-kernel");
    std::fs::write(&garbage, vec![0x5a; 64 << 10]).unwrap();
    bad_kernel.kernel = Some(garbage);
    let rt3 = boxlite::Runtime::open(bad_kernel).unwrap();
    let bx = rt3.get("taken").await.unwrap();
    let err = bx.start().await.unwrap_err();
    assert!(matches!(err, Error::Boot { .. }), "{err}");
    assert!(err.to_string().contains("VM"), "{err}");
    let info = bx.info().await.unwrap();
    assert!(!info.state.is_active(), "{info:?}");
}

/// The kvm engine (our own VMM) end to end: only where hardware KVM is usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kvm_engine_boots_a_box_on_hardware_kvm() {
    let kvm = boxlite::internals::probe_kvm();
    if !kvm.is_hardware() {
        eprintln!("skipped: {}", kvm.describe());
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    let rt = fx.runtime();
    let mut options = BoxOptions::new(IMAGE);
    options.engine = boxlite::EngineKind::Kvm;
    let bx = rt.create(options).await.unwrap();
    bx.start().await.unwrap();
    assert!(bx.info().await.unwrap().engine.unwrap().starts_with("kvm"));
    let out = bx
        .exec(sh("echo via-kvm"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"via-kvm\n");
    eprintln!(
        "kvm engine boot: {:?} ms",
        bx.metrics().await.unwrap().boot_ms
    );
    bx.stop().await.unwrap();
    assert_eq!(bx.info().await.unwrap().state, BoxState::Stopped);
}

/// The kvm engine's network card (boxlite-vmm's virtio-net on the supervisor's stack): a
/// `host` rule lets the box reach a server on the host's loopback as 10.0.2.2, and nothing
/// else on the host. Only where hardware KVM is usable (in L1 under `cargo xtask nested-kvm`
/// here) and `BOXLITE_NETPROBE` names the probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kvm_engine_networks_a_box() {
    let kvm = boxlite::internals::probe_kvm();
    if !kvm.is_hardware() {
        eprintln!("skipped: {}", kvm.describe());
        return;
    }
    let Some(netprobe) = std::env::var_os("BOXLITE_NETPROBE") else {
        eprintln!("skipped: BOXLITE_NETPROBE is not set (`cargo xtask test` sets it)");
        return;
    };
    let Some(fx) = Fixture::new() else { return };
    let tree = fx.dir.path().join("probe-tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::copy(&netprobe, tree.join("netprobe")).unwrap();
    let layout = fx.dir.path().join("probe-layout");
    oci_layers::LayoutBuilder::new()
        .layer_dir(&tree, oci_layers::Compression::Gzip)
        .write_layout(&layout, "latest")
        .unwrap();
    let rt = fx.runtime();
    rt.import_image(&layout, Some("probe")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 256];
            if let Ok(n) = stream.read(&mut buf) {
                let _ = stream.write_all(&buf[..n]);
            }
        }
    });
    let mut options = BoxOptions::new("probe");
    options.engine = boxlite::EngineKind::Kvm;
    options.network = boxlite::NetworkOptions::default().allow(format!("host:{port}"));
    let bx = rt.create(options).await.unwrap();
    bx.start().await.unwrap();
    let probe = |args: Vec<String>| {
        let bx = &bx;
        async move {
            let command = BoxCommand::new("/netprobe").args(args);
            bx.exec(command).await.unwrap().output().await.unwrap()
        }
    };
    let out = probe(vec![
        "connect".into(),
        "host.boxlite.internal".into(),
        port.to_string(),
        "--send".into(),
        "via-kvm-net".into(),
    ])
    .await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("reply=via-kvm-net"), "{said}");
    let out = probe(vec!["connect".into(), "10.0.2.2".into(), "1".into()]).await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.starts_with("refused") || said.starts_with("reset"),
        "{said}"
    );
    bx.stop().await.unwrap();
}

/// Volumes through the library on either engine: a host directory the box writes to and a
/// named volume it reads back, both with `BoxOptions::volume`. `engine` picks the engine.
async fn a_box_mounts_its_volumes(fx: &Fixture, engine: boxlite::EngineKind) {
    let rt = fx.runtime();
    let shared = fx.dir.path().join(format!("shared-{engine:?}"));
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("from-host"), "host words\n").unwrap();
    let volume = format!("lib-{engine:?}").to_lowercase();
    rt.create_volume(&volume, Some(1)).await.unwrap();
    let mut options = BoxOptions::new(IMAGE)
        .volume(boxlite::Volume::bind(&shared, "/mnt/shared"))
        .volume(boxlite::Volume::named(&volume, "/mnt/named"));
    options.engine = engine;
    let bx = rt.create(options).await.unwrap();
    bx.start().await.unwrap();
    let out = bx
        .exec(sh(
            "cat /mnt/shared/from-host; echo box words > /mnt/shared/from-box; \
                  echo kept > /mnt/named/kept; sync",
        ))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"host words\n", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(shared.join("from-box")).unwrap(),
        "box words\n"
    );
    bx.stop().await.unwrap();
    bx.start().await.unwrap();
    let out = bx
        .exec(sh("cat /mnt/named/kept"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"kept\n", "{out:?}");
    bx.remove(RemoveMode::Kill).await.unwrap();
    rt.remove_volume(&volume).await.unwrap();
}

/// [`a_box_mounts_its_volumes`] under QEMU (needs `BOXLITE_VIRTIOFSD`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_mounts_its_volumes_under_qemu() {
    if std::env::var_os("BOXLITE_VIRTIOFSD").is_none() {
        eprintln!("skipped: BOXLITE_VIRTIOFSD is not set (`cargo xtask test` sets it)");
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    a_box_mounts_its_volumes(&fx, boxlite::EngineKind::Qemu).await;
}

/// [`a_box_mounts_its_volumes`] under our VMM: its memfd-backed memory and vhost-user
/// virtio-fs device. Only where hardware KVM is usable (in L1 under `cargo xtask nested-kvm`
/// here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kvm_engine_mounts_volumes() {
    let kvm = boxlite::internals::probe_kvm();
    if !kvm.is_hardware() {
        eprintln!("skipped: {}", kvm.describe());
        return;
    }
    if std::env::var_os("BOXLITE_VIRTIOFSD").is_none() {
        eprintln!("skipped: BOXLITE_VIRTIOFSD is not set (`cargo xtask test` sets it)");
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    a_box_mounts_its_volumes(&fx, boxlite::EngineKind::Kvm).await;
}

/// A box made from a registry reference pulls its image first (the default policy,
/// `missing`), boots it, and finds it again by that reference; `never` refuses what is not here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_of_a_reference_pulls_its_image() {
    let Some(fx) = Fixture::new() else { return };
    let registry = registry_fixture::Registry::builder().start().unwrap();
    let layout = tempfile::tempdir().unwrap();
    support::tools_image()
        .write_layout(layout.path(), "latest")
        .unwrap();
    let reference = format!("{}/e2e/tools:v1", registry.host());
    let status = std::process::Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.path().display()))
        .arg(format!("docker://{reference}"))
        .status()
        .unwrap();
    assert!(status.success());
    let rt = fx.runtime();
    let mut never = BoxOptions::new(reference.clone());
    never.pull = boxlite::PullPolicy::Never;
    let err = rt.create(never).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Image, "{err}");
    let mut options = BoxOptions::new(reference.clone());
    options.name = Some("pulled".into());
    let bx = rt.create(options).await.unwrap();
    assert_eq!(rt.image(&reference).unwrap().record.name, reference);
    bx.start().await.unwrap();
    let out = bx
        .exec(BoxCommand::new("cat").arg("/etc/os-release"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"NAME=\"e2e tools\"\n");
    rt.remove("pulled", RemoveMode::Kill).await.unwrap();
}
