use super::*;

fn host(json: &str) -> Result<HostMessage> {
    decode_host_message(json.as_bytes())
}

fn guest(json: &str) -> Result<GuestMessage> {
    decode_guest_message(json.as_bytes())
}

#[test]
fn wire_form_is_the_documented_json() {
    let exec = HostMessage::Exec(ExecRequest {
        argv: vec!["ls".into(), "-l".into()],
        env: vec![("PATH".into(), "/bin".into())],
        tty: Some(TtySize { rows: 24, cols: 80 }),
        ..ExecRequest::default()
    });
    let json: serde_json::Value = serde_json::from_slice(&encode_message(&exec).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "exec", "argv": ["ls", "-l"], "env": [["PATH", "/bin"]],
                           "tty": {"rows": 24, "cols": 80}})
    );
    let hello = GuestMessage::Hello(Hello::new("0.1.0", 5));
    let json: serde_json::Value = serde_json::from_slice(&encode_message(&hello).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "hello", "agent_version": "0.1.0", "protocol_version": [1, 1],
                           "capabilities": [], "boot_time_ns": 5})
    );
    assert_eq!(
        host(r#"{"type":"shutdown"}"#).unwrap(),
        HostMessage::Shutdown {}
    );
    assert_eq!(
        guest(r#"{"type":"shutting_down"}"#).unwrap(),
        GuestMessage::ShuttingDown {}
    );
}

#[test]
fn every_message_round_trips() {
    let hosts = [
        HostMessage::Exec(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "echo ü".into()],
            env: vec![("A".into(), "b=c".into())],
            cwd: Some("/root".into()),
            user: Some("1000:1000".into()),
            tty: None,
            timeout_ms: Some(1500),
        }),
        HostMessage::Signal {
            signal: 15,
            group: true,
        },
        HostMessage::Resize {
            rows: 50,
            cols: 200,
        },
        HostMessage::Upload {
            path: "/tmp".into(),
        },
        HostMessage::Download {
            path: "/etc/hosts".into(),
        },
        HostMessage::Mount {
            volumes: vec![
                virtiofs("/data", "vol0"),
                VolumeMount {
                    source: MountSource::Disk {
                        device: "/dev/vdzz".into(),
                        fstype: "ext4".into(),
                    },
                    path: "/data/named".into(),
                    read_only: true,
                },
            ],
        },
        HostMessage::Mount { volumes: vec![] },
        HostMessage::Cancel {},
        HostMessage::Ping { nonce: u64::MAX },
        HostMessage::Shutdown {},
    ];
    for m in hosts {
        let back = decode_host_message(&encode_message(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
    let guests = [
        GuestMessage::Hello(Hello {
            capabilities: vec!["tty".into()],
            ..Hello::new("x", 1)
        }),
        GuestMessage::Started { pid: 42 },
        GuestMessage::Exit(ExitStatus {
            code: None,
            signal: Some(9),
            timed_out: true,
        }),
        GuestMessage::Done {},
        GuestMessage::Error {
            kind: ErrorKind::NotFound,
            message: "nope".into(),
        },
        GuestMessage::Pong { nonce: 7 },
        GuestMessage::ShuttingDown {},
    ];
    for m in guests {
        let back = decode_guest_message(&encode_message(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}

#[test]
fn unknown_error_kinds_from_newer_agents_are_other() {
    let m = guest(r#"{"type":"error","kind":"quota_exceeded","message":"m"}"#).unwrap();
    assert_eq!(
        m,
        GuestMessage::Error {
            kind: ErrorKind::Other,
            message: "m".into()
        }
    );
}

#[test]
fn unknown_fields_are_ignored_for_minor_versions() {
    let m = host(r#"{"type":"ping","nonce":1,"future":{"x":[1,2]}}"#).unwrap();
    assert_eq!(m, HostMessage::Ping { nonce: 1 });
}

#[test]
fn malformed_messages_are_rejected_with_a_reason() {
    for bad in [
        "",
        "null",
        "[]",
        "{}",
        r#"{"type":"exec"}"#,
        r#"{"type":"exec","argv":"ls"}"#,
        r#"{"type":"launch_missiles"}"#,
        r#"{"type":"signal","signal":9}"#,
        r#"{"type":"resize","rows":-1,"cols":2}"#,
        r#"{"type":"ping","nonce":1"#,
    ] {
        let e = host(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidMessage(_)), "{bad}: {e}");
    }
}

#[test]
fn validation_names_the_field() {
    let cases = [
        (r#"{"type":"exec","argv":[]}"#, "argv is empty"),
        (r#"{"type":"exec","argv":[""]}"#, "argv[0]"),
        (r#"{"type":"exec","argv":["a","b\u0000"]}"#, "argv[1]"),
        (
            r#"{"type":"exec","argv":["a"],"env":[["A=B","c"]]}"#,
            "env name",
        ),
        (
            r#"{"type":"exec","argv":["a"],"env":[["","c"]]}"#,
            "env name",
        ),
        (r#"{"type":"exec","argv":["a"],"cwd":"relative"}"#, "cwd"),
        (r#"{"type":"exec","argv":["a"],"user":""}"#, "user"),
        (
            r#"{"type":"exec","argv":["a"],"tty":{"rows":0,"cols":1}}"#,
            "terminal size",
        ),
        (r#"{"type":"signal","signal":0,"group":false}"#, "signal 0"),
        (
            r#"{"type":"signal","signal":65,"group":false}"#,
            "signal 65",
        ),
        (r#"{"type":"resize","rows":1,"cols":0}"#, "terminal size"),
        (r#"{"type":"upload","path":"tmp"}"#, "path"),
    ];
    for (json, needle) in cases {
        let e = host(json).unwrap_err().to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
    let e = guest(r#"{"type":"exit","code":300,"timed_out":false}"#).unwrap_err();
    assert!(e.to_string().contains("exit code 300"), "{e}");
}

#[test]
fn list_caps_stop_the_parse_early() {
    let argv = vec!["\"a\""; MAX_ARGS + 1].join(",");
    let e = host(&format!(r#"{{"type":"exec","argv":[{argv}]}}"#)).unwrap_err();
    assert!(e.to_string().contains("more than 16384 arguments"), "{e}");
    let ok = vec!["\"a\""; MAX_ARGS].join(",");
    host(&format!(r#"{{"type":"exec","argv":[{ok}]}}"#)).unwrap();
    let env = vec![r#"["A","b"]"#; MAX_ENV + 1].join(",");
    let e = host(&format!(r#"{{"type":"exec","argv":["a"],"env":[{env}]}}"#)).unwrap_err();
    assert!(e.to_string().contains("environment variables"), "{e}");
    let caps = vec!["\"c\""; MAX_CAPABILITIES + 1].join(",");
    let e = guest(&format!(
        r#"{{"type":"hello","agent_version":"v","protocol_version":[1,0],"capabilities":[{caps}],"boot_time_ns":0}}"#
    ))
    .unwrap_err();
    assert!(e.to_string().contains("capabilities"), "{e}");
}

#[test]
fn long_strings_are_rejected() {
    let long = "x".repeat(MAX_ARG_LEN + 1);
    let e = host(&format!(r#"{{"type":"exec","argv":["{long}"]}}"#)).unwrap_err();
    assert!(e.to_string().contains("argv[0] is 131073 bytes"), "{e}");
    let path = format!("/{}", "p".repeat(MAX_PATH_LEN));
    assert!(host(&format!(r#"{{"type":"download","path":"{path}"}}"#)).is_err());
    let text = "m".repeat(MAX_TEXT_LEN + 1);
    assert!(
        guest(&format!(
            r#"{{"type":"error","kind":"io","message":"{text}"}}"#
        ))
        .is_err()
    );
}

#[test]
fn oversized_json_is_rejected_before_parsing() {
    let big = format!(
        r#"{{"type":"ping","nonce":1,"pad":"{}"}}"#,
        "x".repeat(MAX_CONTROL_LEN)
    );
    let e = host(&big).unwrap_err();
    assert!(e.to_string().contains("more than the limit"), "{e}");
    let request = HostMessage::Exec(ExecRequest::new(vec!["y".repeat(100_000); 12]));
    let e = encode_message(&request).unwrap_err();
    assert!(e.to_string().contains("stdin or an upload"), "{e}");
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    let deep = format!(
        r#"{{"type":"ping","nonce":1,"x":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(host(&deep).is_err());
}

#[test]
fn exit_status_success() {
    assert!(
        ExitStatus {
            code: Some(0),
            ..ExitStatus::default()
        }
        .success()
    );
    assert!(
        !ExitStatus {
            code: Some(1),
            ..ExitStatus::default()
        }
        .success()
    );
    assert!(!ExitStatus::default().success());
}

fn virtiofs(path: &str, tag: &str) -> VolumeMount {
    VolumeMount {
        source: MountSource::Virtiofs { tag: tag.into() },
        path: path.into(),
        read_only: false,
    }
}

fn disk(path: &str, device: &str, fstype: &str) -> VolumeMount {
    VolumeMount {
        source: MountSource::Disk {
            device: device.into(),
            fstype: fstype.into(),
        },
        path: path.into(),
        read_only: false,
    }
}

fn mount(volumes: Vec<VolumeMount>) -> Result<()> {
    HostMessage::Mount { volumes }.validate()
}

#[test]
fn mount_wire_form_is_the_documented_json() {
    let m = HostMessage::Mount {
        volumes: vec![
            virtiofs("/src", "boxlite-vol-0"),
            disk("/var/lib/db", "/dev/vdc", "ext4"),
        ],
    };
    let json: serde_json::Value = serde_json::from_slice(&encode_message(&m).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"type": "mount", "volumes": [
            {"source": {"kind": "virtiofs", "tag": "boxlite-vol-0"}, "path": "/src",
             "read_only": false},
            {"source": {"kind": "disk", "device": "/dev/vdc", "fstype": "ext4"},
             "path": "/var/lib/db", "read_only": false},
        ]})
    );
    // `read_only` may be left out: read-write.
    let m = host(
        r#"{"type":"mount","volumes":[{"source":{"kind":"virtiofs","tag":"t"},"path":"/a"}]}"#,
    )
    .unwrap();
    assert_eq!(
        m,
        HostMessage::Mount {
            volumes: vec![virtiofs("/a", "t")]
        }
    );
    assert_eq!(m.name(), "mount");
    let e =
        host(r#"{"type":"mount","volumes":[{"source":{"kind":"nfs"},"path":"/a"}]}"#).unwrap_err();
    assert!(e.to_string().contains("nfs"), "{e}");
}

#[test]
fn mount_accepts_the_documented_shapes() {
    mount(vec![]).unwrap();
    mount(vec![
        virtiofs("/data", &"t".repeat(MAX_TAG_LEN)),
        virtiofs("/data/sub/./deeper", "x"),
        disk("/vda", "/dev/vda", "ext4"),
        disk("/vdzzz", "/dev/vdzzz", "ext4"),
        disk("/loop", "/dev/loop12", "ext4"),
        disk("/with..dots", "/dev/vdb", "ext4"),
    ])
    .unwrap();
    let many: Vec<_> = (0..MAX_VOLUMES)
        .map(|i| virtiofs(&format!("/v{i}"), "t"))
        .collect();
    mount(many).unwrap();
}

#[track_caller]
fn refused(volumes: Vec<VolumeMount>, needles: &[&str]) {
    let e = mount(volumes).unwrap_err();
    assert!(matches!(e, Error::InvalidMessage(_)), "{e}");
    let text = e.to_string();
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
}

#[test]
fn mount_refuses_each_bad_field_by_name() {
    let too_many: Vec<_> = (0..=MAX_VOLUMES)
        .map(|i| virtiofs(&format!("/v{i}"), "t"))
        .collect();
    refused(too_many, &["17 volumes", "more than 16"]);
    // Tags: empty, too long for the device's config field, NUL.
    refused(
        vec![virtiofs("/a", "")],
        &["volumes[0].source.tag", "1..=36"],
    );
    refused(
        vec![
            virtiofs("/a", "ok"),
            virtiofs("/b", &"t".repeat(MAX_TAG_LEN + 1)),
        ],
        &["volumes[1].source.tag"],
    );
    refused(
        vec![virtiofs("/a", "t\0")],
        &["volumes[0].source.tag", "NUL"],
    );
    // Paths: relative, NUL, too long, `..`, the root itself.
    refused(
        vec![virtiofs("data", "t")],
        &["volumes[0].path", "absolute"],
    );
    refused(vec![virtiofs("/da\0ta", "t")], &["volumes[0].path", "NUL"]);
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    refused(vec![virtiofs(&long, "t")], &["volumes[0].path", "4096"]);
    refused(
        vec![virtiofs("/data/../etc", "t")],
        &["volumes[0].path", "`..`"],
    );
    refused(vec![virtiofs("/..", "t")], &["`..`"]);
    for root in ["/", "//", "/.", "/./"] {
        refused(vec![virtiofs(root, "t")], &["volumes[0].path", "root"]);
    }
    // Devices: only virtio disks (and loop devices for host-mode tests).
    for device in [
        "/dev/sda",
        "/dev/vd",
        "/dev/vdA",
        "/dev/vdaaaa",
        "/dev/vda1",
        "vda",
        "/dev/loop",
        "/dev/loopx",
        "/dev/loop12345678",
        "/dev/../dev/vda",
        "",
    ] {
        refused(
            vec![disk("/a", device, "ext4")],
            &["volumes[0].source.device", "/dev/vd"],
        );
    }
    refused(
        vec![disk("/a", "/dev/vdc", "xfs")],
        &["volumes[0].source.fstype", "\"xfs\"", "ext4"],
    );
    refused(vec![disk("/a", "/dev/vdc", "")], &["fstype"]);
    // The same path twice, however it is spelled.
    refused(
        vec![
            virtiofs("/a", "t"),
            virtiofs("/b", "u"),
            disk("/a/", "/dev/vdb", "ext4"),
        ],
        &["volumes[2].path", "volumes[0].path", "one volume per path"],
    );
    refused(
        vec![virtiofs("/a/b", "t"), virtiofs("//a/./b", "u")],
        &["volumes[1].path"],
    );
}

#[test]
fn mount_lists_stop_at_their_cap_while_parsing() {
    let one = r#"{"source":{"kind":"virtiofs","tag":"t"},"path":"/a"}"#;
    let list = vec![one; MAX_VOLUMES + 1].join(",");
    let e = host(&format!(r#"{{"type":"mount","volumes":[{list}]}}"#)).unwrap_err();
    assert!(e.to_string().contains("more than 16 volumes"), "{e}");
}

#[test]
fn the_mount_capability_is_named() {
    assert_eq!(CAPABILITY_MOUNT, "mount");
    assert!(CAPABILITY_MOUNT.len() <= MAX_CAPABILITY_LEN);
}
