//! Docker credential helpers (`credHelpers`, `credsStore`) run as real programs found on
//! PATH, against a real Basic-auth registry.
//!
//! The helpers are shell scripts in a temp dir put in front of PATH once for this whole test
//! binary (its own process), before any test does anything else.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use registry::Client;
use registry_fixture::images::{Credentials, MediaKind};
use registry_fixture::{Auth, Registry};
use support::{Home, assert_pulled, expect_err, layer, options_with_config, push_as, write_json};

/// The helpers' directory (on PATH) and the log they append `NAME ACTION SERVER` lines to.
struct Helpers {
    _dir: tempfile::TempDir,
    log: PathBuf,
}

/// A helper answering `get` for any 127.0.0.1 registry with `user`/`secret`.
fn answering(log: &Path, name: &str, user: &str, secret: &str) -> String {
    format!(
        "#!/bin/sh\n\
         read -r server\n\
         echo \"{name} $1 $server\" >> '{log}'\n\
         case \"$1:$server\" in\n\
         get:127.0.0.1:*) printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}\\n' \"$server\" ;;\n\
         get:*) echo 'credentials not found in native keychain'; exit 1 ;;\n\
         *) echo \"unsupported $1\" >&2; exit 1 ;;\n\
         esac\n",
        log = log.display()
    )
}

static HELPERS: OnceLock<Helpers> = OnceLock::new();

/// Removes the helpers' directory when the test binary exits (statics are never dropped).
extern "C" fn remove_helpers() {
    if let Some(h) = HELPERS.get() {
        let _ = std::fs::remove_dir_all(h._dir.path());
    }
}

fn helpers() -> &'static Helpers {
    HELPERS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("registry-helpers-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("calls.log");
        let scripts = [
            ("testhelper", answering(&log, "testhelper", "helperuser", "helperpass")),
            ("teststore", answering(&log, "teststore", "storeuser", "storepass")),
            (
                "empty",
                "#!/bin/sh\ncat >/dev/null\necho 'credentials not found in native keychain'\nexit 1\n"
                    .to_string(),
            ),
            (
                "broken",
                "#!/bin/sh\ncat >/dev/null\necho 'the keyring is locked' >&2\nexit 3\n".to_string(),
            ),
        ];
        for (name, body) in scripts {
            let path = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(&path, body).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.path().to_path_buf()];
        paths.extend(std::env::split_paths(&old));
        let joined = std::env::join_paths(paths).unwrap();
        // SAFETY: every test of this binary calls `helpers()` before it starts a runtime, a
        // registry or anything else, and OnceLock makes the others wait until this returns,
        // so no other thread of ours reads the environment while it changes.
        unsafe {
            std::env::set_var("PATH", joined);
        }
        // SAFETY: atexit only stores the pointer to a function that lives as long as the
        // process; the handler touches nothing but a static set before it can run.
        unsafe {
            libc::atexit(remove_helpers);
        }
        Helpers { _dir: dir, log }
    })
}

/// Helper calls logged so far.
fn calls() -> String {
    std::fs::read_to_string(&helpers().log).unwrap_or_default()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn registry_for(user: &str, password: &str) -> Registry {
    Registry::builder()
        .auth(Auth::Basic { user, password })
        .start()
        .unwrap()
}

#[test]
fn cred_helpers_entry_wins_over_auths() {
    helpers();
    let reg = registry_for("helperuser", "helperpass");
    let img = push_as(
        &reg.host(),
        Credentials::basic("helperuser", "helperpass"),
        "helped",
        "v1",
        vec![layer(2000, 1, 5000)],
        MediaKind::Oci,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_json(
        dir.path(),
        "config.json",
        &serde_json::json!({
            // A stale auths entry: docker asks the helper, not this.
            "auths": {reg.host(): {"auth": "aGVscGVydXNlcjp3cm9uZw=="}},
            "credHelpers": {reg.host(): "testhelper"},
            "credsStore": "teststore",
        }),
    );
    let reference = format!("{}/helped:v1", reg.host());
    let home = Home::new();
    let client = Client::new(options_with_config(&config)).unwrap();
    let pulled = runtime().block_on(home.pull(&client, &reference)).unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    let log = calls();
    assert!(
        log.contains(&format!("testhelper get {}", reg.host())),
        "helper calls: {log}"
    );
    assert!(
        !log.contains(&format!("teststore get {}", reg.host())),
        "helper calls: {log}"
    );
}

#[test]
fn creds_store_serves_registries_docker_lists_with_empty_auths() {
    helpers();
    let reg = registry_for("storeuser", "storepass");
    let img = push_as(
        &reg.host(),
        Credentials::basic("storeuser", "storepass"),
        "stored",
        "v1",
        vec![layer(2100, 1, 5000)],
        MediaKind::Docker,
    );
    let dir = tempfile::tempdir().unwrap();
    // What `docker login` writes when a credsStore keeps the secret.
    let config = write_json(
        dir.path(),
        "config.json",
        &serde_json::json!({
            "auths": {reg.host(): {}},
            "credsStore": "teststore",
        }),
    );
    let reference = format!("{}/stored:v1", reg.host());
    let home = Home::new();
    let client = Client::new(options_with_config(&config)).unwrap();
    let pulled = runtime().block_on(home.pull(&client, &reference)).unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    assert!(
        calls().contains(&format!("teststore get {}", reg.host())),
        "{}",
        calls()
    );

    // Without the auths entry at all, the store is asked just the same.
    let config = write_json(
        dir.path(),
        "config2.json",
        &serde_json::json!({"credsStore": "teststore"}),
    );
    let home = Home::new();
    let client = Client::new(options_with_config(&config)).unwrap();
    let pulled = runtime().block_on(home.pull(&client, &reference)).unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
}

#[test]
fn helpers_without_credentials_or_broken_or_missing_are_reported() {
    helpers();
    let reg = registry_for("helperuser", "helperpass");
    push_as(
        &reg.host(),
        Credentials::basic("helperuser", "helperpass"),
        "helped",
        "v1",
        vec![layer(2200, 1, 500)],
        MediaKind::Oci,
    );
    let reference = format!("{}/helped:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let pull_with_helper = |name: &str| {
        let config = write_json(
            dir.path(),
            &format!("{name}.json"),
            &serde_json::json!({"credHelpers": {reg.host(): name}}),
        );
        let client = Client::new(options_with_config(&config)).unwrap();
        let home = Home::new();
        let result = rt.block_on(home.pull(&client, &reference));
        assert_eq!(home.records(), 0);
        expect_err(result).to_string()
    };

    // "credentials not found": no credential, so the registry's refusal with the fix.
    assert_eq!(
        pull_with_helper("empty"),
        format!(
            "unauthorized for helped on {0}: run boxlite login {0}",
            reg.host()
        )
    );
    let broken = pull_with_helper("broken");
    assert!(
        broken.contains("docker-credential-broken") && broken.contains("the keyring is locked"),
        "{broken}"
    );
    let missing = pull_with_helper("nosuchhelper");
    assert!(
        missing.contains("docker-credential-nosuchhelper") && missing.contains("PATH"),
        "{missing}"
    );
}
