//! A Docker-Hub-style token server: `GET /token?service=..&scope=..` (with
//! optional Basic auth) answers RS256 JWTs that docker-registry accepts
//! because the `x5c` certificate is its `rootcertbundle`.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::json;

use crate::certs::{SigningCert, make_signing_cert, sign_rs256};
use crate::http::{self, Request, Server};
use crate::util::{base64, base64_decode, base64url, parse_query, random_bytes, rfc3339, unix_now};

/// distribution 2.8 accepts a token up to this many seconds after its `exp`.
pub const REGISTRY_LEEWAY_SECS: u64 = 60;

/// The `service` the registry and the server agree on.
const SERVICE: &str = "registry-fixture";

/// The `iss` claim, matched against the registry's `auth.token.issuer`.
const ISSUER: &str = "registry-fixture-token-issuer";

/// Configures a [`TokenServer`] before it starts.
#[derive(Debug, Clone)]
pub struct TokenServerBuilder {
    users: Vec<(String, String, Vec<String>)>,
    anonymous_pull: bool,
    expires_in: u64,
    compensate_leeway: bool,
}

impl TokenServerBuilder {
    /// A user allowed pull and push (and delete) on every repository.
    pub fn user(self, user: &str, password: &str) -> Self {
        self.user_with_actions(user, password, &["*"])
    }

    /// A user allowed only `actions` (e.g. `["pull"]`) on every repository.
    pub fn user_with_actions(mut self, user: &str, password: &str, actions: &[&str]) -> Self {
        let actions = actions.iter().map(|a| a.to_string()).collect();
        self.users.push((user.into(), password.into(), actions));
        self
    }

    /// Whether requests without credentials get `pull` (Docker Hub does).
    pub fn anonymous_pull(mut self, allowed: bool) -> Self {
        self.anonymous_pull = allowed;
        self
    }

    /// The `expires_in` seconds put in responses and in `exp` (default 300).
    pub fn expires_in(mut self, secs: u64) -> Self {
        self.expires_in = secs;
        self
    }

    /// Sets `exp` to `now + expires_in - 60` so that distribution, which
    /// allows 60 s of leeway past `exp`, starts refusing the token right when
    /// `expires_in` says it ends: what renewal tests need with small values.
    pub fn compensate_registry_leeway(mut self, on: bool) -> Self {
        self.compensate_leeway = on;
        self
    }

    /// Generates the signing identity and starts serving on 127.0.0.1.
    pub fn start(self) -> Result<TokenServer> {
        let dir = tempfile::Builder::new()
            .prefix("registry-fixture-token-")
            .tempdir()
            .context("creating the token server's temp dir")?;
        let cert = make_signing_cert(dir.path())?;
        let state = Arc::new(State {
            users: self.users,
            anonymous_pull: self.anonymous_pull,
            expires_in: AtomicU64::new(self.expires_in),
            compensate_leeway: self.compensate_leeway,
            cert,
            issued: AtomicU64::new(0),
            last_query: Mutex::new(None),
            rejected: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the token server")?;
        let s = Arc::clone(&state);
        let server = Server::start(listener, "token-server", Arc::new(move |c| s.serve(c)))?;
        Ok(TokenServer {
            server,
            state,
            _dir: dir,
        })
    }
}

/// Shared state of a running token server.
struct State {
    users: Vec<(String, String, Vec<String>)>,
    anonymous_pull: bool,
    expires_in: AtomicU64,
    compensate_leeway: bool,
    cert: SigningCert,
    issued: AtomicU64,
    last_query: Mutex<Option<String>>,
    rejected: AtomicU64,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    server: Server,
    state: Arc<State>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("realm", &self.realm())
            .finish_non_exhaustive()
    }
}

impl TokenServer {
    /// Starts configuring a server: no users, no anonymous pull, 300 s tokens.
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder {
            users: Vec::new(),
            anonymous_pull: false,
            expires_in: 300,
            compensate_leeway: false,
        }
    }

    /// `http://127.0.0.1:PORT/token`, the registry's `auth.token.realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }

    /// The `service` (JWT `aud`) the registry is configured with.
    pub fn service(&self) -> &str {
        SERVICE
    }

    /// The `iss` claim the registry is configured to expect.
    pub fn issuer(&self) -> &str {
        ISSUER
    }

    /// PEM of the signing certificate, the registry's `rootcertbundle`.
    pub fn cert_pem(&self) -> &[u8] {
        &self.state.cert.cert_pem
    }

    /// How many tokens were issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// How many requests were refused (wrong password) so far.
    pub fn requests_rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// The raw query (or form body) of the last token request.
    pub fn last_query(&self) -> Option<String> {
        self.state
            .last_query
            .lock()
            .map(|q| q.clone())
            .unwrap_or_default()
    }

    /// Changes `expires_in` for tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.state.expires_in.store(secs, Ordering::SeqCst);
    }
}

impl State {
    /// Answers one connection.
    fn serve(&self, stream: std::net::TcpStream) {
        let mut reader = BufReader::new(&stream);
        let Ok(Some(req)) = http::read_request(&mut reader) else {
            return;
        };
        let mut out = &stream;
        let _ = self.answer(&req, &mut out);
    }

    /// Routes and answers a request.
    fn answer<W: Write>(&self, req: &Request, w: &mut W) -> std::io::Result<()> {
        if req.path() != "/token" {
            return http::write_error(w, 404, "NOT_FOUND", "no such endpoint", &[]);
        }
        // GET carries the query; the OAuth2 POST flow carries a form body.
        let raw = match req.method.as_str() {
            "GET" => req.query().unwrap_or("").to_string(),
            "POST" => String::from_utf8_lossy(&req.body).into_owned(),
            _ => return http::write_error(w, 405, "UNSUPPORTED", "method not allowed", &[]),
        };
        if let Ok(mut q) = self.last_query.lock() {
            *q = Some(raw.clone());
        }
        let params = parse_query(&raw);
        let mut scopes: Vec<String> = Vec::new();
        for (k, v) in &params {
            if k == "scope" {
                // The POST flow space-separates scopes in one value.
                scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(String::from));
            }
        }
        let form_user = params
            .iter()
            .find(|(k, _)| k == "username")
            .map(|(_, v)| v.clone());
        let form_pass = params
            .iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.clone());
        let creds = match (basic_credentials(req), form_user) {
            (Some(c), _) => Some(c),
            (None, Some(u)) => Some((u, form_pass.unwrap_or_default())),
            (None, None) => None,
        };
        let allowed: Vec<String> = match &creds {
            Some((user, pass)) => {
                match self.users.iter().find(|(u, p, _)| u == user && p == pass) {
                    Some((_, _, actions)) => actions.clone(),
                    None => {
                        self.rejected.fetch_add(1, Ordering::SeqCst);
                        let challenge = vec![(
                            "WWW-Authenticate".to_string(),
                            "Basic realm=\"registry-fixture\"".to_string(),
                        )];
                        return http::write_error(
                            w,
                            401,
                            "UNAUTHORIZED",
                            "incorrect username or password",
                            &challenge,
                        );
                    }
                }
            }
            None if self.anonymous_pull => vec!["pull".to_string()],
            None => Vec::new(),
        };
        let subject = creds.map(|(u, _)| u).unwrap_or_default();
        let access = grant(&scopes, &allowed);
        match self.issue(&subject, access) {
            Ok(body) => {
                let headers = vec![("Content-Type".to_string(), "application/json".to_string())];
                http::write_response(w, 200, &headers, body.as_bytes())
            }
            Err(e) => http::write_error(w, 500, "UNKNOWN", &format!("{e:#}"), &[]),
        }
    }

    /// Signs a token for `subject` with `access` and renders the response.
    fn issue(&self, subject: &str, access: Vec<serde_json::Value>) -> Result<String> {
        let now = unix_now();
        let expires_in = self.expires_in.load(Ordering::SeqCst);
        let exp = if self.compensate_leeway {
            (now + expires_in).saturating_sub(REGISTRY_LEEWAY_SECS)
        } else {
            now + expires_in
        };
        let header = json!({
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64(&self.cert.cert_der)],
        });
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": exp,
            "nbf": now.saturating_sub(1),
            "iat": now,
            "jti": hex::encode(random_bytes(16)?),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let sig = sign_rs256(&self.cert.key, signing_input.as_bytes())?;
        let token = format!("{signing_input}.{}", base64url(&sig));
        self.issued.fetch_add(1, Ordering::SeqCst);
        Ok(json!({
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": rfc3339(now),
        })
        .to_string())
    }
}

/// The user and password of a Basic `Authorization` header.
fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(b64)?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The `access` claim: each requested `type:name:actions` scope reduced to
/// the actions allowed (`*` in `allowed` grants everything requested). Scopes
/// with nothing granted are left out, which the registry reads as denial.
fn grant(scopes: &[String], allowed: &[String]) -> Vec<serde_json::Value> {
    let mut merged: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut order = Vec::new();
    for scope in scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let key = (kind.to_string(), name.to_string());
        if !merged.contains_key(&key) {
            order.push(key.clone());
        }
        let entry = merged.entry(key).or_default();
        for action in actions.split(',') {
            let ok = allowed.iter().any(|a| a == action || a == "*");
            if ok && !entry.iter().any(|a| a == action) {
                entry.push(action.to_string());
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| {
            let actions = merged.remove(&key)?;
            (!actions.is_empty()).then(|| json!({"type": key.0, "name": key.1, "actions": actions}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn grants_only_allowed_actions() {
        let scopes = vec![
            "repository:a/b:pull,push".to_string(),
            "repository:a/b:delete".to_string(),
            "repository:c:push".to_string(),
        ];
        let got = grant(&scopes, &["pull".to_string()]);
        assert_eq!(
            got,
            vec![json!({"type": "repository", "name": "a/b", "actions": ["pull"]})]
        );
        let all = grant(&scopes, &["*".to_string()]);
        assert_eq!(all[0]["actions"], json!(["pull", "push", "delete"]));
        assert_eq!(all[1]["name"], "c");
    }
}
