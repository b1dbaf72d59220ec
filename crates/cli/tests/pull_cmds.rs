//! `boxlite pull`, `login`, `logout` and the image commands on pulled images, against real
//! registries (Debian's docker-registry) on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Env, Run, boxlite};
use registry_fixture::images::{Credentials, ImageSpec, Layer, Pusher};
use registry_fixture::{Auth, Registry};

fn push_small(registry: &Registry, creds: Credentials, repo: &str, tag: &str) {
    let layers = vec![
        Layer::random_files(1, 4, 1000).unwrap(),
        Layer::random_files(2, 3, 2000).unwrap(),
    ];
    Pusher::new(registry.host(), creds)
        .push_image(repo, tag, &ImageSpec::new(layers))
        .unwrap();
}

/// `boxlite --home … ARGS` with `DOCKER_CONFIG` pointing into the environment.
fn run_with_config(env: &Env, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = boxlite();
    cmd.arg("--home")
        .arg(env.home())
        .env("DOCKER_CONFIG", env.path("docker"))
        .env("HOME", env.path("user"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .args(args);
    match stdin {
        None => Run::of(cmd),
        Some(text) => {
            use std::io::Write;
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            Run {
                args: format!("{args:?}"),
                success: out.status.success(),
                code: out.status.code(),
                stdout: String::from_utf8(out.stdout).unwrap(),
                stderr: String::from_utf8(out.stderr).unwrap(),
            }
        }
    }
}

#[test]
fn pulled_images_are_found_by_their_reference_everywhere() {
    let registry = Registry::builder().start().unwrap();
    push_small(&registry, Credentials::None, "team/app", "v1");
    let env = Env::new();
    let reference = format!("{}/team/app:v1", registry.host());
    let run = env.run(&["pull", &reference]);
    // Quiet off a terminal: the name on stdout, nothing on stderr.
    assert_eq!(run.ok(), format!("{reference}\n"));
    assert_eq!(run.stderr, "");
    assert_eq!(env.names(), std::slice::from_ref(&reference));
    let inspect = env.run(&["image", "inspect", &reference]);
    assert!(inspect.ok().contains("team/app:v1"), "{inspect:?}");
    let dest = env.path("rootfs");
    env.run(&["image", "unpack", &reference, dest.to_str().unwrap()])
        .ok();
    assert!(std::fs::read_dir(&dest).unwrap().count() > 0);
    // Unknown tag and repository say which.
    let tagless = format!("{}/team/app:nosuch", registry.host());
    env.run(&["pull", &tagless])
        .fails_with(&["no tag nosuch in team/app on", &registry.host()]);
    let norepo = format!("{}/no/such", registry.host());
    env.run(&["pull", &norepo])
        .fails_with(&["no repository no/such on"]);
    env.run(&["image", "rm", &reference]).ok();
    assert!(env.names().is_empty());
}

#[test]
fn docker_hub_names_are_found_by_their_short_form_through_a_mirror() {
    let registry = Registry::builder().start().unwrap();
    push_small(&registry, Credentials::None, "library/tiny", "latest");
    let env = Env::new();
    let run = env.run(&["--registry-mirror", &registry.host(), "pull", "tiny"]);
    assert_eq!(run.ok(), "docker.io/library/tiny:latest\n");
    // Every spelling docker accepts finds it.
    for name in [
        "tiny",
        "tiny:latest",
        "library/tiny",
        "docker.io/library/tiny:latest",
    ] {
        env.run(&["image", "inspect", name]).ok();
    }
    env.run(&["image", "rm", "tiny"]).ok();
    assert!(env.names().is_empty());
}

#[test]
fn login_checks_saves_and_logout_removes() {
    let registry = Registry::builder()
        .auth(Auth::Basic {
            user: "alice",
            password: "s3cret",
        })
        .start()
        .unwrap();
    push_small(
        &registry,
        Credentials::basic("alice", "s3cret"),
        "private/app",
        "v1",
    );
    let env = Env::new();
    let host = registry.host();
    let reference = format!("{host}/private/app:v1");
    let unauthorized = format!("unauthorized for private/app on {host}: run boxlite login {host}");
    run_with_config(&env, &["pull", &reference], None).fails_with(&[&unauthorized]);
    // A wrong password is refused and saves nothing.
    run_with_config(
        &env,
        &["login", &host, "-u", "alice", "--password-stdin"],
        Some("wrong\n"),
    )
    .fails_with(&["unauthorized", &host]);
    let config = env.path("docker/config.json");
    assert!(!config.exists());
    let run = run_with_config(
        &env,
        &["login", &host, "-u", "alice", "--password-stdin"],
        Some("s3cret\n"),
    );
    run.ok();
    assert!(run.stderr.contains("Login Succeeded"), "{run:?}");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&config).unwrap().contains(&host));
    run_with_config(&env, &["pull", &reference], None).ok();
    run_with_config(&env, &["logout", &host], None).ok();
    assert!(!std::fs::read_to_string(&config).unwrap().contains(&host));
    // Logged out: the manifest needs the login again.
    run_with_config(&env, &["pull", &reference], None).fails_with(&[&unauthorized]);
}

#[test]
fn bad_pull_arguments_are_refused_clearly() {
    let env = Env::new();
    env.run(&["pull", "Bad/Name"]).fails_with(&["lowercase"]);
    env.run(&["pull", "--platform", "linux", "alpine"])
        .fails_with(&["os/arch"]);
    env.run(&["run", "--pull", "sometimes", "alpine", "true"])
        .fails_with(&["--pull", "missing, always or never"]);
    env.run(&["run", "--pull", "never", "127.0.0.1:1/not/here", "true"])
        .fails_with(&["no image named"]);
    // Missing, and its registry is not there: both said, on one line.
    env.run(&["create", "127.0.0.1:1/not/here"]).fails_with(&[
        "no image named 127.0.0.1:1/not/here here, and pulling it failed",
        "reaching registry 127.0.0.1:1",
    ]);
}
