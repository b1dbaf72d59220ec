//! Docker's `config.json` and podman's `auth.json`: reading credentials, and writing them
//! for `login` (atomically, 0600, keeping every key we do not manage).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::helper::{run_helper, run_helper_get};
use super::{Credential, auth_key, normalise_key};
use crate::error::{Error, Result};

/// Largest credentials file read: a user's own file, but a few KiB in practice.
const MAX_AUTH_FILE_BYTES: u64 = 4 << 20;

/// One parsed credentials file.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl AuthFile {
    /// Reads `path`; `None` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<AuthFile>> {
        let bad = |reason: String| Error::Credentials {
            path: path.to_path_buf(),
            reason,
        };
        let file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(format!("cannot open it: {e}"))),
        };
        let mut bytes = Vec::new();
        file.take(MAX_AUTH_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if bytes.len() as u64 > MAX_AUTH_FILE_BYTES {
            return Err(bad(format!(
                "it is larger than {MAX_AUTH_FILE_BYTES} bytes"
            )));
        }
        let doc = if bytes.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(bad("it is not a JSON object".into())),
                Err(e) => return Err(bad(format!("it is not valid JSON ({e}); fix or remove it"))),
            }
        };
        Ok(Some(AuthFile {
            path: path.to_path_buf(),
            doc,
        }))
    }

    /// The credential this file gives `registry`: its credential helper's, else its
    /// `auths` entry's, else the default store's (`credsStore`).
    pub fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        if let Some(helper) = self.helper_for(registry) {
            return run_helper_get(&helper, &auth_key(registry));
        }
        // `docker login` with a credsStore leaves an empty entry: the secret is in the store.
        if let Some(entry) = self.auth_entry(registry).filter(|e| holds_credential(e)) {
            return self.parse_entry(registry, entry).map(Some);
        }
        if let Some(store) = self.doc.get("credsStore").and_then(Value::as_str) {
            if !store.is_empty() {
                return run_helper_get(store, &auth_key(registry));
            }
        }
        Ok(None)
    }

    fn helper_for(&self, registry: &str) -> Option<String> {
        let helpers = self.doc.get("credHelpers")?.as_object()?;
        helpers
            .iter()
            .find(|(k, _)| normalise_key(k) == registry)
            .and_then(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    fn auth_entry(&self, registry: &str) -> Option<&Map<String, Value>> {
        let auths = self.doc.get("auths")?.as_object()?;
        auths
            .iter()
            .find(|(k, _)| normalise_key(k) == registry)
            .and_then(|(_, v)| v.as_object())
    }

    fn parse_entry(&self, registry: &str, entry: &Map<String, Value>) -> Result<Credential> {
        let bad = |reason: &str| Error::Credentials {
            path: self.path.clone(),
            reason: format!("the entry for {registry}: {reason}"),
        };
        let text = |k: &str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        if let Some(token) = text("identitytoken") {
            return Ok(Credential::IdentityToken(token.to_string()));
        }
        if let Some(auth) = text("auth") {
            let decoded = STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("its auth is not base64"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| bad("its auth is not UTF-8"))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| bad("its auth is not base64 of user:password"))?;
            return Ok(Credential::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        match (text("username"), text("password")) {
            (Some(u), Some(p)) => Ok(Credential::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(bad(
                "it has neither auth, username and password, nor identitytoken",
            )),
        }
    }
}

/// Whether an `auths` entry holds any credential field (not just `{}` or an `email`).
fn holds_credential(entry: &Map<String, Value>) -> bool {
    ["identitytoken", "auth", "username", "password"]
        .iter()
        .any(|k| {
            entry
                .get(*k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
}

/// Saves `username`/`password` for `registry` in the docker config at `path`, through its
/// credential helper when it names one for the registry (as docker does); returns where.
pub fn store_login(path: &Path, registry: &str, username: &str, password: &str) -> Result<String> {
    let mut file = AuthFile::read(path)?.unwrap_or(AuthFile {
        path: path.to_path_buf(),
        doc: Map::new(),
    });
    let key = auth_key(registry);
    let helper = file.helper_for(registry).or_else(|| {
        file.doc
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    });
    if let Some(helper) = helper {
        let input = serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
        run_helper(&helper, "store", input.to_string().as_bytes())?;
        return Ok(format!("credential helper docker-credential-{helper}"));
    }
    let auths = file
        .doc
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Value::Object(auths) = auths {
        auths.retain(|k, _| normalise_key(k) != registry);
        let auth = STANDARD.encode(format!("{username}:{password}"));
        auths.insert(key, serde_json::json!({ "auth": auth }));
    }
    write_atomically(path, &file.doc)?;
    Ok(path.display().to_string())
}

/// Removes what `store_login` saved for `registry`; returns whether there was anything.
pub fn remove_login(path: &Path, registry: &str) -> Result<bool> {
    let Some(mut file) = AuthFile::read(path)? else {
        return Ok(false);
    };
    let mut removed = false;
    if let Some(helper) = file.helper_for(registry) {
        run_helper(&helper, "erase", auth_key(registry).as_bytes())?;
        removed = true;
    }
    if let Some(Value::Object(auths)) = file.doc.get_mut("auths") {
        let before = auths.len();
        auths.retain(|k, _| normalise_key(k) != registry);
        removed |= auths.len() != before;
    }
    if removed {
        write_atomically(path, &file.doc)?;
    }
    Ok(removed)
}

/// Writes `doc` to `path` through a temporary file in the same directory, 0600, fsynced.
fn write_atomically(path: &Path, doc: &Map<String, Value>) -> Result<()> {
    let bad = |what: &str, e: std::io::Error| Error::Credentials {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| bad("creating its directory", e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| bad("creating a temporary file beside it", e))?;
    let mut json = serde_json::to_vec_pretty(doc).map_err(|e| Error::Credentials {
        path: path.to_path_buf(),
        reason: format!("encoding: {e}"),
    })?;
    json.push(b'\n');
    tmp.write_all(&json)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| bad("writing", e))?;
    tmp.persist(path)
        .map_err(|e| bad("replacing it", e.error))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::credentials::CredentialFiles;

    #[test]
    fn login_writes_and_lookup_reads_and_logout_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, r#"{"auths":{},"psFormat":"table {{.ID}}"}"#).unwrap();
        store_login(&path, "docker.io", "me", "pa:ss").unwrap();
        store_login(&path, "127.0.0.1:5000", "u", "p").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(doc["psFormat"], "table {{.ID}}");
        assert!(doc["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
        let files = CredentialFiles {
            docker_config: Some(path.clone()),
            podman_auth: vec![],
        };
        assert_eq!(
            files.lookup("docker.io").unwrap(),
            Some(Credential::Basic {
                username: "me".into(),
                password: "pa:ss".into()
            })
        );
        assert!(files.lookup("other.io").unwrap().is_none());
        assert!(remove_login(&path, "docker.io").unwrap());
        assert!(!remove_login(&path, "docker.io").unwrap());
        assert!(files.lookup("docker.io").unwrap().is_none());
        assert!(files.lookup("127.0.0.1:5000").unwrap().is_some());
    }

    #[test]
    fn podman_files_and_odd_keys() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("auth.json");
        let auth = STANDARD.encode("pu:pp");
        fs::write(
            &podman,
            format!(r#"{{"auths":{{"http://reg.example:5000/v2/":{{"auth":"{auth}"}},"tok.io":{{"identitytoken":"rt"}}}}}}"#),
        )
        .unwrap();
        let files = CredentialFiles {
            docker_config: Some(dir.path().join("missing.json")),
            podman_auth: vec![podman],
        };
        assert!(matches!(
            files.lookup("reg.example:5000").unwrap(),
            Some(Credential::Basic { username, .. }) if username == "pu"
        ));
        assert_eq!(
            files.lookup("tok.io").unwrap(),
            Some(Credential::IdentityToken("rt".into()))
        );
    }

    #[test]
    fn broken_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, "{not json").unwrap();
        let err = AuthFile::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("not valid JSON"),
            "{err}"
        );
        fs::write(&path, r#"{"auths":{"r.io":{"auth":"!!"}}}"#).unwrap();
        let err = AuthFile::read(&path)
            .unwrap()
            .unwrap()
            .credential("r.io")
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.io") && err.contains("base64"), "{err}");
    }
}
