//! Credentials from the files docker, podman and skopeo users already have: docker's
//! `config.json` (`auths`, `credHelpers`, `credsStore`) and podman's `auth.json`.
//!
//! The library reads no environment: the caller says which files (see
//! [`CredentialFiles`]); the CLI fills them from `DOCKER_CONFIG`, `HOME`, `REGISTRY_AUTH_FILE`
//! and `XDG_RUNTIME_DIR` as docker and podman do.

mod config;
mod helper;

use std::path::PathBuf;

pub use config::{AuthFile, remove_login, store_login};
pub use helper::{MAX_HELPER_OUTPUT, run_helper_get};

use crate::error::Result;

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A username and password (or access token used as one).
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token server.
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

/// Which credential files to read, in order; the first that has the registry wins.
#[derive(Debug, Clone, Default)]
pub struct CredentialFiles {
    /// Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`);
    /// `login` writes here.
    pub docker_config: Option<PathBuf>,
    /// Podman's `auth.json` files (`REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json`).
    pub podman_auth: Vec<PathBuf>,
}

impl CredentialFiles {
    /// The credential for `registry` (as the user names it: `docker.io`, `host:port`), if
    /// any file has one.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>> {
        let files = self.docker_config.iter().chain(&self.podman_auth);
        for path in files {
            let Some(file) = AuthFile::read(path)? else {
                continue;
            };
            if let Some(c) = file.credential(registry)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// The key docker writes for `registry` in `auths` (Docker Hub's is its old v1 URL).
pub fn auth_key(registry: &str) -> String {
    if registry == crate::reference::DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

/// The registry an `auths` key (or a `login` argument) names: keys may carry a scheme and a path
/// (`https://index.docker.io/v1/`, `http://host:5000/v2/`).
pub fn normalise_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => {
            crate::reference::DOCKER_HUB.to_string()
        }
        _ => host,
    }
}
