//! Progress output: none when stderr is not a terminal, bars (then a clean summary) when it is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Env, demo_layout};
use oci_layers::{Compression, LayoutBuilder};

/// Bytes of incompressible data in the "big" image: enough for progress to be drawn, small
/// enough to keep the test fast.
const BIG_BYTES: usize = 4 << 20;

/// Writes a one-layer OCI layout whose layer holds `BIG_BYTES` of pseudo-random data.
fn big_layout(env: &Env) -> PathBuf {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..BIG_BYTES / 8)
        .flat_map(|_| {
            // xorshift64: deterministic, and gzip cannot shrink it.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let src = env.path("big-src");
    std::fs::create_dir_all(src.join("data")).unwrap();
    std::fs::write(src.join("data/random.bin"), &data).unwrap();
    let layout = env.path("big");
    LayoutBuilder::new()
        .layer_dir(&src, Compression::Gzip)
        .write_layout(&layout, "big:1")
        .unwrap();
    layout
}

#[track_caller]
fn assert_no_control_chars(what: &str, text: &str) {
    assert!(
        !text.contains(['\r', '\x1b']),
        "{what} holds terminal control characters: {text:?}"
    );
}

#[test]
fn quiet_when_stderr_is_not_a_terminal() {
    let env = Env::new();
    let layout = big_layout(&env);
    let (demo, _) = demo_layout(&env, "demo", "demo:1");
    for args in [
        vec!["image", "import", layout.to_str().unwrap()],
        vec!["image", "import", demo.to_str().unwrap()],
        vec!["image", "unpack", "big:1", env.path("r1").to_str().unwrap()],
        vec![
            "image",
            "unpack",
            "demo:1",
            env.path("r2").to_str().unwrap(),
        ],
        vec!["image", "ls"],
    ] {
        let run = env.run(&args);
        run.ok();
        assert_no_control_chars(&run.args, &run.stdout);
        assert_eq!(run.stderr, "", "{}: stderr of a success", run.args);
    }
}

/// Quotes `s` for `sh -c`.
fn quote(s: &Path) -> String {
    format!("'{}'", s.to_str().unwrap().replace('\'', r"'\''"))
}

/// Runs `boxlite --home <home> <args>` with a pseudo-terminal as its stdout and stderr, under
/// util-linux `script`; returns what the terminal showed, or `None` when `script` is missing.
fn run_on_pty(home: &Path, args: &[&str]) -> Option<String> {
    let mut line = format!(
        "{} --home {}",
        quote(Path::new(env!("CARGO_BIN_EXE_boxlite"))),
        quote(home)
    );
    for a in args {
        line.push(' ');
        line.push_str(&quote(Path::new(a)));
    }
    let out = match Command::new("script")
        .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
        .env_remove("BOXLITE_HOME")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running script: {e}"),
    };
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{line} under a pty failed: {shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(shown)
}

#[test]
fn progress_and_summary_on_a_terminal() {
    let env = Env::new();
    let layout = big_layout(&env);
    let home = env.home();
    let Some(shown) = run_on_pty(&home, &["image", "import", layout.to_str().unwrap()]) else {
        eprintln!("skipping: util-linux `script` is not installed, so no pty to test with");
        return;
    };
    assert!(
        shown.contains("big:1 sha256:"),
        "import summary missing: {shown:?}"
    );

    let dest = env.path("rootfs");
    let shown = run_on_pty(&home, &["image", "unpack", "big:1", dest.to_str().unwrap()]).unwrap();
    let summary = format!(
        "{}: 1 layer (1 extracted), 1 file, 4.0 MiB by ",
        dest.display()
    );
    assert!(
        shown.contains(&summary),
        "unpack summary missing: {shown:?}"
    );
    assert!(
        shown.contains("extracting"),
        "no extraction progress on a terminal: {shown:?}"
    );
    assert_eq!(
        std::fs::metadata(dest.join("data/random.bin"))
            .unwrap()
            .len(),
        BIG_BYTES as u64
    );
}

#[test]
fn pull_draws_layer_and_total_bars_on_a_terminal_only() {
    use registry_fixture::images::{Credentials, ImageSpec, Layer, Pusher};
    let registry = registry_fixture::Registry::builder().start().unwrap();
    let layers = vec![
        Layer::random_files(7, 2, 2 << 20).unwrap(),
        Layer::random_files(8, 2, 1 << 20).unwrap(),
    ];
    Pusher::new(registry.host(), Credentials::None)
        .push_image("bars/img", "v1", &ImageSpec::new(layers))
        .unwrap();
    let reference = format!("{}/bars/img:v1", registry.host());
    let env = Env::new();
    let Some(shown) = run_on_pty(&env.home(), &["pull", &reference]) else {
        eprintln!("skipping: util-linux `script` is not installed, so no pty to test with");
        return;
    };
    assert!(shown.contains("total"), "no total bar: {shown:?}");
    assert!(
        shown.contains(&format!("Pulled {reference} (sha256:")) && shown.contains("2 layers"),
        "pull summary missing: {shown:?}"
    );
    // The same pull off a terminal: only the name, on stdout.
    let other = Env::new();
    let run = other.run(&["pull", &reference]);
    assert_eq!(run.ok(), format!("{reference}\n"));
    assert_eq!(run.stderr, "");
}
