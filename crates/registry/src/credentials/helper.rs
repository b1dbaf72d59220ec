//! Docker credential helpers: `docker-credential-NAME get|store|erase`, found on PATH, JSON
//! on stdout. The helper is the user's own program, but its output is still bounded and its
//! run time capped so a broken one cannot hang a pull.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Credential;
use crate::error::{Error, Result};

/// Most bytes read from a helper's stdout or stderr: a credential is a few KiB.
pub const MAX_HELPER_OUTPUT: u64 = 1 << 20;
/// How long a helper may run: they answer in milliseconds, or prompt a keyring unlock.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a running helper is polled.
const POLL: Duration = Duration::from_millis(10);
/// What a helper prints on stdout for a registry it has nothing for.
const NOT_FOUND: &str = "credentials not found";

#[derive(Deserialize)]
struct HelperCredential {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Asks helper `name` for the credential of `server` (docker's key for the registry);
/// `None` when it has none.
pub fn run_helper_get(name: &str, server: &str) -> Result<Option<Credential>> {
    let out = match run_helper(name, "get", server.as_bytes()) {
        Ok(out) => out,
        Err(Error::Helper { reason, .. }) if reason.contains(NOT_FOUND) => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |reason: String| Error::Helper {
        helper: name.to_string(),
        reason,
    };
    let cred: HelperCredential = serde_json::from_slice(&out).map_err(|e| {
        bad(format!(
            "`get` printed something other than credentials JSON: {e}"
        ))
    })?;
    if cred.secret.is_empty() {
        return Ok(None);
    }
    // Docker's convention: the username "<token>" marks an identity token.
    if cred.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(cred.secret)));
    }
    Ok(Some(Credential::Basic {
        username: cred.username,
        password: cred.secret,
    }))
}

/// Runs `docker-credential-NAME ACTION` with `input` on stdin; its stdout on success.
pub(crate) fn run_helper(name: &str, action: &str, input: &[u8]) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::Helper {
        helper: name.to_string(),
        reason,
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || name.starts_with('.') || !name.chars().all(ok) {
        return Err(bad(
            "its name may only hold letters, digits, - _ and .".into()
        ));
    }
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| bad(format!("cannot run {program} (is it on PATH?): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is not an error by itself.
        let _ = stdin.write_all(input);
    }
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > HELPER_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(bad(format!(
                    "`{action}` did not finish within {} s",
                    HELPER_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(bad(format!("waiting for it: {e}"))),
        }
    };
    let stdout = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        let said = String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout });
        let said: String = said.trim().chars().take(500).collect();
        return Err(bad(format!("`{action}` failed ({status}): {said}")));
    }
    Ok(stdout)
}

/// Reads a pipe to its end (at most [`MAX_HELPER_OUTPUT`]) on a thread of its own, so a
/// helper writing a lot to both pipes cannot deadlock against us.
fn reader(pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.take(MAX_HELPER_OUTPUT).read_to_end(&mut out);
        out
    })
}
