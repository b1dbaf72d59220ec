//! Host probing against this machine and against made-up /proc text.

use std::os::unix::fs::PermissionsExt;

use super::*;

const GOOD: &str = "MemTotal:       24684084 kB\n\
MemFree:        20252920 kB\n\
MemAvailable:   24105180 kB\n\
Buffers:           40756 kB\n\
Cached:          3288060 kB\n\
HugePages_Total:       0\n";

#[test]
fn probe_agrees_with_the_pvm_module() {
    let kvm = probe_kvm();
    let pvm = Path::new(KVM_PVM_MODULE).exists();
    match &kvm {
        KvmSupport::Paravirtual => assert!(pvm),
        KvmSupport::Hardware => assert!(!pvm),
        KvmSupport::Unavailable(why) => assert!(!why.is_empty()),
    }
    assert_eq!(kvm.is_hardware(), kvm == KvmSupport::Hardware);
    if pvm && rustix::process::geteuid().is_root() && Path::new(KVM_DEVICE).exists() {
        assert_eq!(kvm, KvmSupport::Paravirtual, "{}", kvm.describe());
    }
    eprintln!("this host: {}", kvm.describe());
}

#[test]
fn a_missing_device_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let kvm = probe_kvm_at(&dir.path().join("kvm"), &dir.path().join("pvm"));
    let KvmSupport::Unavailable(why) = &kvm else {
        panic!("{kvm:?}")
    };
    assert!(why.starts_with("no "), "{why}");
    assert!(kvm.describe().contains("TCG"), "{}", kvm.describe());
}

#[test]
fn a_file_that_is_not_kvm_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("kvm");
    std::fs::write(&fake, b"").unwrap();
    let kvm = probe_kvm_at(&fake, &dir.path().join("pvm"));
    let KvmSupport::Unavailable(why) = &kvm else {
        panic!("{kvm:?}")
    };
    assert!(why.contains("not a KVM device"), "{why}");
}

#[test]
fn an_unopenable_device_is_unavailable_with_the_reason() {
    if rustix::process::geteuid().is_root() {
        // Root opens anything; the kvm-group hint is checked by its text below instead.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("kvm");
    std::fs::write(&fake, b"").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o000)).unwrap();
    let kvm = probe_kvm_at(&fake, &dir.path().join("pvm"));
    assert!(
        matches!(&kvm, KvmSupport::Unavailable(why) if why.contains("kvm group")),
        "{kvm:?}"
    );
}

#[test]
fn every_kind_describes_itself_in_one_sentence() {
    for kvm in [
        KvmSupport::Hardware,
        KvmSupport::Paravirtual,
        KvmSupport::Unavailable("no /dev/kvm".into()),
    ] {
        let text = kvm.describe();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() > 20, "{text}");
    }
    assert!(KvmSupport::Paravirtual.describe().contains("kvm_pvm"));
}

#[test]
fn meminfo_parses() {
    let info = parse_meminfo(GOOD).unwrap();
    assert_eq!(info.total_kib, 24684084);
    assert_eq!(info.available_kib, 24105180);
}

#[test]
fn meminfo_without_available_estimates_it() {
    let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 1 kB\n";
    assert_eq!(parse_meminfo(old).unwrap().available_kib, 111);
    // Never more available than in all.
    let odd = "MemTotal: 1000 kB\nMemAvailable: 5000 kB\n";
    assert_eq!(parse_meminfo(odd).unwrap().available_kib, 1000);
}

#[test]
fn garbled_meminfo_is_an_error_not_a_panic() {
    for text in [
        "",
        "garbage",
        "\0\0\0",
        "MemTotal:",
        "MemTotal: lots kB\n",
        "MemTotal: 12 MB\n",
        "MemTotal: -5 kB\n",
        "MemTotal: 99999999999999999999999 kB\n",
        "MemTotal: 12 kB extra\n",
        "MemFree: 12 kB\n",
        "MemTotal: 1000 kB\nMemAvailable: x kB\n",
    ] {
        let err = parse_meminfo(text).unwrap_err();
        assert!(matches!(err, Error::Host(_)), "{text:?}: {err:?}");
        assert!(err.to_string().contains("/proc/meminfo"), "{err}");
    }
}

#[test]
fn this_hosts_memory_is_read() {
    let total = memory_total_mib().unwrap();
    let available = memory_available_mib().unwrap();
    assert!(total >= 64, "{total}");
    assert!(available <= total);
}

#[test]
fn check_memory_refuses_more_than_the_host_has() {
    check_memory(64).unwrap();
    let err = check_memory(u32::MAX).unwrap_err().to_string();
    // In the library's words; the CLI names the flag (`--memory`).
    assert!(err.contains(&format!("memory {} MiB", u32::MAX)), "{err}");
    assert!(err.contains("in all") && err.contains("available"), "{err}");
    let info = MemInfo {
        total_kib: 2048 * 1024,
        available_kib: 1024 * 1024,
    };
    check_memory_against(2048, info).unwrap();
    let err = check_memory_against(2049, info).unwrap_err().to_string();
    assert_eq!(
        err,
        "memory 2049 MiB: this host has only 2048 MiB of memory in all (1024 MiB \
         available); ask for less"
    );
}

#[test]
fn programs_are_found_only_when_executable() {
    assert!(find_program("sh").is_some());
    assert_eq!(find_program(""), None);
    assert_eq!(find_program("no-such-program-boxlite"), None);
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"#!/bin/sh\n").unwrap();
    assert_eq!(find_program(plain.to_str().unwrap()), None);
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(find_program(plain.to_str().unwrap()), Some(plain));
    assert_eq!(
        find_program(dir.path().to_str().unwrap()),
        None,
        "a directory"
    );
}
