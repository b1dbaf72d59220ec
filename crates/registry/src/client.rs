//! The HTTP side: one `reqwest` client per [`Client`], the scheme each registry speaks, its
//! auth challenge, tokens per repository, retries with backoff, and redirects followed by
//! hand so that `Authorization` never travels to blob storage.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;

use crate::challenge::{Challenge, parse_challenge};
use crate::credentials::{Credential, CredentialFiles};
use crate::error::{Error, Result, chain};
use crate::reference::{DOCKER_HUB, api_host};

/// Redirects followed for one request: registries redirect once, to blob storage.
const MAX_REDIRECTS: usize = 5;
/// Largest token server answer read: a JWT and a few fields.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 1 << 20;
/// Largest registry error body read, for its message.
const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;
/// A token is renewed this long before it expires, so it does not expire in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);
/// Token lifetime when the server does not say: the distribution spec's default.
const DEFAULT_TOKEN_SECS: u64 = 60;
/// Longest `Retry-After` honoured: a registry cannot park a pull for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long connecting may take before it counts as a failed attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may stall between bytes before it counts as broken.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How often, and how patiently, failed requests are retried (5xx, 429, broken connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; it doubles each time.
    pub first_delay: Duration,
    /// Longest wait between tries.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before try `n + 1` (after `n` failures).
    pub(crate) fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Proxies, as `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` say (the caller reads them).
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Proxy for HTTPS registries (`http://proxy:3128`).
    pub https: Option<String>,
    /// Proxy for plain-HTTP registries.
    pub http: Option<String>,
    /// Hosts not to proxy, comma-separated (`NO_PROXY` syntax).
    pub no_proxy: Option<String>,
}

/// How a [`Client`] reaches registries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// PEM certificates trusted besides the system's roots (a private registry's CA).
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Registries (`host` or `host:port`) spoken to over plain HTTP when HTTPS fails, as
    /// registries on loopback addresses always are (docker's rule).
    pub insecure_registries: Vec<String>,
    /// Proxies.
    pub proxy: ProxyOptions,
    /// A registry (`host[:port]`) tried first for `docker.io` images.
    pub docker_io_mirror: Option<String>,
    /// Where credentials come from.
    pub credentials: CredentialFiles,
    /// Retries.
    pub retry: RetryPolicy,
    /// The `User-Agent` sent.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            extra_ca_pem: Vec::new(),
            insecure_registries: Vec::new(),
            proxy: ProxyOptions::default(),
            docker_io_mirror: None,
            credentials: CredentialFiles::default(),
            retry: RetryPolicy::default(),
            user_agent: concat!("boxlite/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Where requests for one registry go: the name the user knows, the host that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    /// The registry as named in references (`docker.io`), for messages and credentials.
    pub registry: String,
    /// The host and port the API is on (`registry-1.docker.io`).
    pub host: String,
}

impl Endpoint {
    /// The endpoint of `registry` itself.
    pub fn of(registry: &str) -> Endpoint {
        Endpoint {
            registry: registry.to_string(),
            host: api_host(registry).to_string(),
        }
    }
}

/// A registry client: cheap to clone, safe to share; it remembers schemes, challenges,
/// credentials and tokens for its lifetime.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    options: ClientOptions,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `https://host` or `http://host`, once a ping said which works.
    bases: HashMap<String, String>,
    /// The challenge each host answered its ping with (`None`: no auth needed).
    challenges: HashMap<String, Option<Challenge>>,
    /// Credentials looked up per registry.
    credentials: HashMap<String, Option<Credential>>,
    /// Bearer tokens per (host, repository).
    tokens: HashMap<(String, String), Token>,
}

#[derive(Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorEntry {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `options`; fails on a CA certificate or proxy URL it cannot use.
    pub fn new(options: ClientOptions) -> Result<Client> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(options.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .no_proxy();
        for pem in &options.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                Error::InvalidOption(format!("a CA certificate given is not PEM: {e}"))
            })?;
            if certs.is_empty() {
                return Err(Error::InvalidOption(
                    "a CA certificate file given holds no PEM certificate".into(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let no_proxy = options
            .proxy
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        let proxies = [
            (options.proxy.https.as_deref(), true),
            (options.proxy.http.as_deref(), false),
        ];
        for (url, https) in proxies {
            let Some(url) = url.filter(|u| !u.is_empty()) else {
                continue;
            };
            let proxy = if https {
                reqwest::Proxy::https(url)
            } else {
                reqwest::Proxy::http(url)
            }
            .map_err(|e| Error::InvalidOption(format!("proxy {url:?}: {e}")))?;
            builder = builder.proxy(proxy.no_proxy(no_proxy.clone()));
        }
        let http = builder
            .build()
            .map_err(|e| Error::InvalidOption(format!("setting up HTTPS: {}", chain(&e))))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                options,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The endpoints to try for `registry`, best first: a docker.io mirror, then the registry.
    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if registry == DOCKER_HUB {
            if let Some(mirror) = &self.inner.options.docker_io_mirror {
                let host = mirror
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                out.push(Endpoint {
                    registry: registry.to_string(),
                    host: host.to_string(),
                });
            }
        }
        out.push(Endpoint::of(registry));
        out
    }

    /// Checks that `registry` accepts `credential` (for `login`): pings it and, when it
    /// wants auth, authenticates as a pull of nothing would.
    pub async fn check_login(&self, registry: &str, credential: &Credential) -> Result<()> {
        let ep = Endpoint::of(registry);
        let base = self.base_url(&ep).await?;
        let challenge = self.lock().challenges.get(&ep.host).cloned().flatten();
        let unauthorized = || Error::Unauthorized {
            repository: "(login)".into(),
            registry: registry.to_string(),
        };
        let auth = match challenge {
            None => return Ok(()),
            Some(Challenge::Basic) => basic(credential).ok_or_else(unauthorized)?,
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = self
                    .fetch_token(&ep, "", &realm, service.as_deref(), Some(credential))
                    .await?;
                bearer(&token.value)?
            }
        };
        let url = format!("{base}/v2/");
        let resp = self
            .inner
            .http
            .get(&url)
            .header(header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(|e| transport(&format!("logging in to {url}"), &e))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Error::Unauthorized {
                repository: "(login)".into(),
                registry: registry.to_string(),
            }),
            s => Err(status_error(&format!("logging in to {registry}"), &ep, s, resp).await),
        }
    }

    /// GETs `/v2/<repository>/<path>` on `ep` with auth, retries and redirects; returns
    /// any response that is not an auth failure, redirect, 429 or 5xx, for the caller to
    /// judge. `what` names the request in errors.
    pub(crate) async fn get(
        &self,
        ep: &Endpoint,
        repository: &str,
        path: &str,
        headers: HeaderMap,
        what: &str,
    ) -> Result<Response> {
        let base = self.base_url(ep).await?;
        let url = format!("{base}/v2/{repository}/{path}");
        let retry = self.inner.options.retry;
        let mut failures = 0u32;
        let mut renewed = false;
        loop {
            let auth = self.authorization(ep, repository).await?;
            let outcome = self.send_following(&url, &headers, auth).await;
            let wait = match outcome {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    if renewed {
                        return Err(Error::Unauthorized {
                            repository: repository.to_string(),
                            registry: ep.registry.clone(),
                        });
                    }
                    // An expired token, or a scope the ping did not announce: renew once.
                    renewed = true;
                    let challenge = resp
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    let mut state = self.lock();
                    state
                        .tokens
                        .remove(&(ep.host.clone(), repository.to_string()));
                    if challenge.is_some() {
                        state.challenges.insert(ep.host.clone(), challenge);
                    }
                    continue;
                }
                Ok(resp) if is_retryable(resp.status()) => {
                    if failures + 1 >= retry.attempts {
                        return Err(status_error(what, ep, resp.status(), resp).await);
                    }
                    retry_after(&resp)
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    if failures + 1 >= retry.attempts {
                        return Err(transport(
                            &format!("{what}: {url} (after {} tries)", retry.attempts),
                            &e,
                        ));
                    }
                    None
                }
            };
            failures += 1;
            tokio::time::sleep(wait.unwrap_or_else(|| retry.delay(failures))).await;
        }
    }

    /// Sends a GET and follows redirects, never sending `auth` past the first hop.
    async fn send_following(
        &self,
        url: &str,
        headers: &HeaderMap,
        auth: Option<HeaderValue>,
    ) -> std::result::Result<Response, reqwest::Error> {
        let mut url = url.to_string();
        let mut auth = auth;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .inner
                .http
                .request(Method::GET, &url)
                .headers(headers.clone());
            if let Some(a) = auth.take() {
                req = req.header(header::AUTHORIZATION, a);
            }
            let resp = req.send().await?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| resp.url().join(l).ok());
            match next {
                Some(next) => url = next.to_string(),
                None => return Ok(resp),
            }
        }
        // Too many: the last redirect goes back to the caller, which reports its status.
        self.inner
            .http
            .get(&url)
            .headers(headers.clone())
            .send()
            .await
    }

    /// `https://host` or, for loopback and insecure registries when HTTPS fails,
    /// `http://host`; found by pinging `/v2/` once, which also tells the auth challenge.
    async fn base_url(&self, ep: &Endpoint) -> Result<String> {
        if let Some(base) = self.lock().bases.get(&ep.host) {
            return Ok(base.clone());
        }
        let schemes: &[&str] = if self.allows_http(&ep.host) {
            &["https", "http"]
        } else {
            &["https"]
        };
        let retry = self.inner.options.retry;
        let mut last = String::new();
        for attempt in 0..retry.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(retry.delay(attempt)).await;
            }
            // Why each scheme failed: an HTTPS error matters even when HTTP is tried after.
            let mut reasons = Vec::new();
            for scheme in schemes {
                let url = format!("{scheme}://{}/v2/", ep.host);
                match self.inner.http.get(&url).send().await {
                    Ok(resp) if is_retryable(resp.status()) => {
                        reasons.push(format!("{url} answered {}", resp.status()));
                    }
                    // Plain HTTP to a TLS port answers 400: that is no registry speaking HTTP.
                    Ok(resp) if *scheme == "http" && !is_ping_answer(resp.status()) => {
                        reasons.push(format!(
                            "{url} answered {}, which is not a registry's answer",
                            resp.status()
                        ));
                    }
                    Ok(resp) => {
                        let challenge = match resp.status() {
                            StatusCode::UNAUTHORIZED => resp
                                .headers()
                                .get(header::WWW_AUTHENTICATE)
                                .and_then(|v| v.to_str().ok())
                                .and_then(parse_challenge),
                            _ => None,
                        };
                        let base = format!("{scheme}://{}", ep.host);
                        let mut state = self.lock();
                        state.challenges.insert(ep.host.clone(), challenge);
                        state.bases.insert(ep.host.clone(), base.clone());
                        return Ok(base);
                    }
                    Err(e) => reasons.push(format!("{url}: {}", chain(&e))),
                }
            }
            last = reasons.join("; ");
        }
        Err(Error::Transport {
            what: format!("reaching registry {}", ep.registry),
            reason: format!("{last} (after {} tries)", retry.attempts.max(1)),
        })
    }

    /// Plain HTTP is allowed for loopback addresses and registries listed as insecure.
    fn allows_http(&self, host: &str) -> bool {
        let name = strip_port(host);
        let loopback = name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback
            || self
                .inner
                .options
                .insecure_registries
                .iter()
                .any(|r| r == host || r == name)
    }

    /// The `Authorization` a request to `repository` on `ep` carries, if its challenge
    /// wants one and we have what it takes.
    async fn authorization(&self, ep: &Endpoint, repository: &str) -> Result<Option<HeaderValue>> {
        let challenge = self.lock().challenges.get(&ep.host).cloned().flatten();
        let Some(challenge) = challenge else {
            return Ok(None);
        };
        let credential = self.credential(&ep.registry).await?;
        match challenge {
            Challenge::Basic => Ok(credential.as_ref().and_then(basic)),
            Challenge::Bearer { realm, service, .. } => {
                let key = (ep.host.clone(), repository.to_string());
                let cached = self.lock().tokens.get(&key).cloned();
                let token = match cached.filter(|t| Instant::now() < t.renew_at) {
                    Some(t) => t,
                    None => {
                        let t = self
                            .fetch_token(
                                ep,
                                repository,
                                &realm,
                                service.as_deref(),
                                credential.as_ref(),
                            )
                            .await?;
                        self.lock().tokens.insert(key, t.clone());
                        t
                    }
                };
                Ok(Some(bearer(&token.value)?))
            }
        }
    }

    /// The credential for `registry`, looked up once.
    async fn credential(&self, registry: &str) -> Result<Option<Credential>> {
        if let Some(c) = self.lock().credentials.get(registry) {
            return Ok(c.clone());
        }
        let files = self.inner.options.credentials.clone();
        let name = registry.to_string();
        // Helpers are programs: run them off the async threads.
        let found = tokio::task::spawn_blocking(move || files.lookup(&name))
            .await
            .map_err(|e| Error::Invalid(format!("looking up credentials: {e}")))??;
        self.lock()
            .credentials
            .insert(registry.to_string(), found.clone());
        Ok(found)
    }

    /// Gets a pull token for `repository` (none: a login check) from the token server.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        repository: &str,
        realm: &str,
        service: Option<&str>,
        credential: Option<&Credential>,
    ) -> Result<Token> {
        let scope = (!repository.is_empty()).then(|| format!("repository:{repository}:pull"));
        let what = format!("getting a token for {repository} from {realm}");
        let mut req = match credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "boxlite".to_string()),
                ];
                form.extend(service.map(|s| ("service", s.to_string())));
                form.extend(scope.clone().map(|s| ("scope", s)));
                self.inner.http.post(realm).form(&form)
            }
            other => {
                let mut query: Vec<(&str, String)> = Vec::new();
                query.extend(service.map(|s| ("service", s.to_string())));
                query.extend(scope.clone().map(|s| ("scope", s)));
                let req = self.inner.http.get(realm).query(&query);
                match other.and_then(basic) {
                    Some(auth) => req.header(header::AUTHORIZATION, auth),
                    None => req,
                }
            }
        };
        req = req.header(header::ACCEPT, "application/json");
        let resp = req.send().await.map_err(|e| transport(&what, &e))?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(Error::Unauthorized {
                    repository: if repository.is_empty() {
                        "(login)".to_string()
                    } else {
                        repository.to_string()
                    },
                    registry: ep.registry.clone(),
                });
            }
            s => return Err(status_error(&what, ep, s, resp).await),
        }
        let body = read_capped(resp, MAX_TOKEN_RESPONSE_BYTES, &what).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::Invalid(format!("{what}: the answer is not token JSON: {e}")))?;
        let value = if parsed.token.is_empty() {
            parsed.access_token
        } else {
            parsed.token
        };
        if value.is_empty() {
            return Err(Error::Invalid(format!("{what}: the answer holds no token")));
        }
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_TOKEN_SECS));
        let margin = TOKEN_MARGIN.min(lifetime / 2);
        Ok(Token {
            value,
            renew_at: Instant::now() + lifetime.saturating_sub(margin),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave these maps inconsistent: every update is one insert.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn basic(c: &Credential) -> Option<HeaderValue> {
    match c {
        Credential::Basic { username, password } => {
            let v = format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{password}"))
            );
            HeaderValue::from_str(&v).ok()
        }
        Credential::IdentityToken(_) => None,
    }
}

fn bearer(token: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::Invalid("the token server sent a token that is not a header".into()))
}

/// Whether `s` is what a registry answers `GET /v2/` with: OK, an auth challenge, or 404
/// from one that does not implement the ping.
fn is_ping_answer(s: StatusCode) -> bool {
    s.is_success()
        || s == StatusCode::UNAUTHORIZED
        || s == StatusCode::FORBIDDEN
        || s == StatusCode::NOT_FOUND
}

fn is_retryable(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error()
}

/// The wait a 429 or 503 asks for (`Retry-After` in seconds), capped.
fn retry_after(resp: &Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

pub(crate) fn transport(what: &str, e: &reqwest::Error) -> Error {
    Error::Transport {
        what: what.to_string(),
        reason: chain(e),
    }
}

/// The registry's error entries from a failed response (empty if it sent none).
pub(crate) async fn error_entries(resp: Response) -> Vec<ErrorEntry> {
    let Ok(body) = read_capped(resp, MAX_ERROR_BODY_BYTES, "error").await else {
        return Vec::new();
    };
    serde_json::from_slice::<ErrorBody>(&body)
        .map(|b| b.errors)
        .unwrap_or_default()
}

/// An [`Error::Status`] with the registry's own message, if it sent one.
pub(crate) async fn status_error(
    what: &str,
    ep: &Endpoint,
    status: StatusCode,
    resp: Response,
) -> Error {
    let entries = error_entries(resp).await;
    let detail = entries
        .iter()
        .map(|e| {
            let m: String = format!("{} {}", e.code, e.message)
                .chars()
                .take(200)
                .collect();
            m.trim().to_string()
        })
        .collect::<Vec<_>>()
        .join("; ");
    Error::Status {
        what: what.to_string(),
        registry: ep.host.clone(),
        status: status.as_u16(),
        detail: if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        },
    }
}

/// Reads a body of at most `cap` bytes; refuses a longer one before and while reading.
pub(crate) async fn read_capped(mut resp: Response, cap: u64, what: &str) -> Result<Vec<u8>> {
    let too_large = || Error::TooLarge {
        what: what.to_string(),
        limit: cap,
    };
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transport(&format!("reading {what}"), &e))?
    {
        if (out.len() + chunk.len()) as u64 > cap {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 9,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
        };
        let d: Vec<u128> = (1..6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 700, 700]);
        assert_eq!(p.delay(64), Duration::from_millis(700));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(strip_port("[::1]:5000"), "::1");
        assert_eq!(strip_port("reg.io"), "reg.io");
    }
}
