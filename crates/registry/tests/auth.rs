//! Auth against real registries: htpasswd Basic, Bearer tokens from the fixture's token
//! server (cached per repository, renewed on expiry and on 401), identity tokens, and
//! `Authorization` never following a redirect to blob storage.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use registry::{Client, CredentialFiles, PullOptions};
use registry_fixture::images::{Credentials, ImageSpec, MediaKind};
use registry_fixture::{Auth, Canned, FakeRegistry, Fault, Proxy, Registry, TokenServer};
use support::{
    Home, assert_pulled, docker_config, expect_err, layer, options, options_with_config, push_as,
    three_layers, write_json,
};

const USER: &str = "bob";
const PASSWORD: &str = "hunter2";

fn unauthorized(repo: &str, registry: &str) -> String {
    format!("unauthorized for {repo} on {registry}: run boxlite login {registry}")
}

fn basic_registry() -> Registry {
    Registry::builder()
        .auth(Auth::Basic {
            user: USER,
            password: PASSWORD,
        })
        .start()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_uses_docker_config_and_names_the_fix_when_refused() {
    let reg = basic_registry();
    let img = push_as(
        &reg.host(),
        Credentials::basic(USER, PASSWORD),
        "private/app",
        "v1",
        three_layers(1000),
        MediaKind::Oci,
    );
    let reference = format!("{}/private/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();

    let good = docker_config(dir.path(), &reg.host(), USER, PASSWORD);
    let client = Client::new(options_with_config(&good)).unwrap();
    let home = Home::new();
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);

    let wrong_dir = tempfile::tempdir().unwrap();
    let wrong = docker_config(wrong_dir.path(), &reg.host(), USER, "nope");
    let home = Home::new();
    let err = expect_err(
        home.pull(
            &Client::new(options_with_config(&wrong)).unwrap(),
            &reference,
        )
        .await,
    );
    assert_eq!(err.to_string(), unauthorized("private/app", &reg.host()));
    assert_eq!(home.records(), 0);

    // No credentials at all: the same advice.
    let err = expect_err(home.pull(&support::client(), &reference).await);
    assert_eq!(err.to_string(), unauthorized("private/app", &reg.host()));

    // A docker config that has other registries only is no credential either.
    let other_dir = tempfile::tempdir().unwrap();
    let other = docker_config(other_dir.path(), "other.example:5000", USER, PASSWORD);
    let err = expect_err(
        home.pull(
            &Client::new(options_with_config(&other)).unwrap(),
            &reference,
        )
        .await,
    );
    assert_eq!(err.to_string(), unauthorized("private/app", &reg.host()));
    assert_eq!(home.records(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_podman_auth_json_with_username_and_password() {
    let reg = basic_registry();
    let img = push_as(
        &reg.host(),
        Credentials::basic(USER, PASSWORD),
        "podman",
        "v1",
        vec![layer(1010, 1, 1000)],
        MediaKind::Oci,
    );
    let dir = tempfile::tempdir().unwrap();
    let auth_json = write_json(
        dir.path(),
        "auth.json",
        &serde_json::json!({"auths": {format!("http://{}/v2/", reg.host()): {
            "username": USER, "password": PASSWORD
        }}}),
    );
    let mut o = options();
    o.credentials = CredentialFiles {
        docker_config: Some(dir.path().join("absent/config.json")),
        podman_auth: vec![auth_json],
    };
    let home = Home::new();
    let reference = format!("{}/podman:v1", reg.host());
    let pulled = home
        .pull(&Client::new(o).unwrap(), &reference)
        .await
        .unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
}

/// A token server with user `alice`, and a registry trusting it.
fn token_registry(builder: registry_fixture::TokenServerBuilder) -> (TokenServer, Registry) {
    let tokens = builder.user("alice", "s3cret").start().unwrap();
    let reg = Registry::builder()
        .auth(Auth::Token(&tokens))
        .start()
        .unwrap();
    (tokens, reg)
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_pulls_with_one_token_per_repository() {
    let (tokens, reg) = token_registry(TokenServer::builder());
    let alice = Credentials::basic("alice", "s3cret");
    let layers: Vec<_> = (0..5).map(|i| layer(1100 + i, 1, 10_000)).collect();
    let img = push_as(
        &reg.host(),
        alice.clone(),
        "team/app",
        "v1",
        layers,
        MediaKind::Oci,
    );
    let other = push_as(
        &reg.host(),
        alice,
        "team/other",
        "v1",
        vec![layer(1110, 1, 1000)],
        MediaKind::Docker,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = docker_config(dir.path(), &reg.host(), "alice", "s3cret");
    let client = Client::new(options_with_config(&config)).unwrap();
    let home = Home::new();

    let before = tokens.tokens_issued();
    let reference = format!("{}/team/app:v1", reg.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    let used = tokens.tokens_issued() - before;
    assert!(
        (1..=2).contains(&used),
        "{used} tokens for one 5-layer pull"
    );
    let query = tokens.last_query().unwrap();
    assert!(
        query.contains("scope=repository%3Ateam%2Fapp%3Apull")
            || query.contains("scope=repository:team/app:pull"),
        "{query}"
    );
    assert!(query.contains("service=registry-fixture"), "{query}");

    // The same repository again: the cached token serves.
    let before = tokens.tokens_issued();
    home.pull(&client, &reference).await.unwrap();
    assert_eq!(tokens.tokens_issued(), before);

    // Another repository needs a token of its own.
    let reference = format!("{}/team/other:v1", reg.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &other, &reference);
    assert_eq!(tokens.tokens_issued(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_refuses_a_wrong_password_or_none_with_the_fix() {
    let (tokens, reg) = token_registry(TokenServer::builder());
    push_as(
        &reg.host(),
        Credentials::basic("alice", "s3cret"),
        "team/app",
        "v1",
        vec![layer(1200, 1, 1000)],
        MediaKind::Oci,
    );
    let reference = format!("{}/team/app:v1", reg.host());
    let dir = tempfile::tempdir().unwrap();
    let wrong = docker_config(dir.path(), &reg.host(), "alice", "wrong");
    let home = Home::new();
    let rejected = tokens.requests_rejected();
    let err = expect_err(
        home.pull(
            &Client::new(options_with_config(&wrong)).unwrap(),
            &reference,
        )
        .await,
    );
    assert_eq!(err.to_string(), unauthorized("team/app", &reg.host()));
    assert!(tokens.requests_rejected() > rejected);

    // Anonymous: the token server grants nothing, the registry refuses the empty token.
    let err = expect_err(home.pull(&support::client(), &reference).await);
    assert_eq!(err.to_string(), unauthorized("team/app", &reg.host()));
    assert_eq!(home.records(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_anonymous_pull_when_the_server_allows_it() {
    let (tokens, reg) = token_registry(TokenServer::builder().anonymous_pull(true));
    let img = push_as(
        &reg.host(),
        Credentials::basic("alice", "s3cret"),
        "public",
        "v1",
        vec![layer(1250, 1, 1000)],
        MediaKind::Oci,
    );
    let reference = format!("{}/public:v1", reg.host());
    let home = Home::new();
    let before = tokens.tokens_issued();
    let pulled = home.pull(&support::client(), &reference).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    assert!(tokens.tokens_issued() > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_tokens_are_renewed_between_pulls_and_mid_pull() {
    // Long tokens while pushing, 2 s ones (that the registry honours for 2 s) once pulling.
    let (tokens, reg) = token_registry(
        TokenServer::builder()
            .expires_in(300)
            .compensate_registry_leeway(true),
    );
    let alice = Credentials::basic("alice", "s3cret");
    let first = push_as(
        &reg.host(),
        alice.clone(),
        "team/app",
        "v1",
        vec![layer(1300, 1, 1000)],
        MediaKind::Oci,
    );
    let second = push_as(
        &reg.host(),
        alice.clone(),
        "team/app",
        "v2",
        vec![layer(1301, 1, 1000)],
        MediaKind::Oci,
    );
    let slow_layers: Vec<_> = (0..3).map(|i| layer(1310 + i, 1, 150_000)).collect();
    let slow = push_as(
        &reg.host(),
        alice,
        "team/app",
        "slow",
        slow_layers,
        MediaKind::Oci,
    );
    tokens.set_expires_in(2);

    let dir = tempfile::tempdir().unwrap();
    let config = docker_config(dir.path(), &reg.host(), "alice", "s3cret");
    let client = Client::new(options_with_config(&config)).unwrap();
    let home = Home::new();
    let reference = format!("{}/team/app:v1", reg.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &first, &reference);

    // Past the token's life: the registry would refuse it, the client gets a new one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = tokens.tokens_issued();
    let reference = format!("{}/team/app:v2", reg.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &second, &reference);
    assert!(tokens.tokens_issued() > before);

    // A pull that outlives its token: ~1 s per layer, one at a time, through a throttle.
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::Throttle {
        bytes_per_sec: 160_000,
    });
    let proxy_config = docker_config(dir.path(), &proxy.host(), "alice", "s3cret");
    let client = Client::new(options_with_config(&proxy_config)).unwrap();
    let mut opts = PullOptions::default();
    opts.max_concurrent_downloads = 1;
    let before = tokens.tokens_issued();
    let reference = format!("{}/team/app:slow", proxy.host());
    let pulled = home.pull_with(&client, &reference, &opts).await.unwrap();
    assert_pulled(&home, &pulled, &slow, &reference);
    let used = tokens.tokens_issued() - before;
    assert!(
        used >= 2,
        "a ~3 s pull with 2 s tokens used {used} token(s)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_renews_the_token_once_then_names_the_fix() {
    let (tokens, reg) = token_registry(TokenServer::builder());
    let alice = Credentials::basic("alice", "s3cret");
    let first = push_as(
        &reg.host(),
        alice.clone(),
        "team/app",
        "v1",
        vec![layer(1400, 1, 1000)],
        MediaKind::Oci,
    );
    let second = push_as(
        &reg.host(),
        alice,
        "team/app",
        "v2",
        vec![layer(1401, 1, 1000)],
        MediaKind::Oci,
    );
    let proxy = Proxy::in_front_of(&reg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = docker_config(dir.path(), &proxy.host(), "alice", "s3cret");
    let client = Client::new(options_with_config(&config)).unwrap();
    let home = Home::new();
    let reference = format!("{}/team/app:v1", proxy.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &first, &reference);

    // The registry refuses the (still fresh) cached token once: the client gets a new one.
    proxy.set_fault(Fault::FailRequests {
        status: 401,
        count: 1,
        retry_after: None,
    });
    let before = tokens.tokens_issued();
    let reference = format!("{}/team/app:v2", proxy.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_pulled(&home, &pulled, &second, &reference);
    assert_eq!(tokens.tokens_issued(), before + 1);

    // Refused again after renewing: unauthorized, with the fix.
    proxy.set_fault(Fault::FailRequests {
        status: 401,
        count: 10,
        retry_after: None,
    });
    let home = Home::new();
    let err = expect_err(home.pull(&client, &reference).await);
    assert_eq!(err.to_string(), unauthorized("team/app", &proxy.host()));
    assert_eq!(home.records(), 0);
}

/// The fixture's token server does not check refresh tokens (its POST handler reads only
/// `username`/`password` form fields), so this checks the client's half of the identity
/// token flow: an `identitytoken` from podman's auth.json goes to the token server as an
/// OAuth2 `refresh_token` grant, and the token it answers pulls.
#[tokio::test(flavor = "multi_thread")]
async fn identity_token_is_sent_as_a_refresh_token_grant() {
    let (tokens, reg) = token_registry(TokenServer::builder().anonymous_pull(true));
    let img = push_as(
        &reg.host(),
        Credentials::basic("alice", "s3cret"),
        "team/app",
        "v1",
        vec![layer(1500, 1, 1000)],
        MediaKind::Oci,
    );
    let dir = tempfile::tempdir().unwrap();
    let auth_json = write_json(
        dir.path(),
        "auth.json",
        &serde_json::json!({"auths": {reg.host(): {"identitytoken": "refresh-me-123"}}}),
    );
    let mut o = options();
    o.credentials = CredentialFiles {
        docker_config: None,
        podman_auth: vec![auth_json],
    };
    let home = Home::new();
    let reference = format!("{}/team/app:v1", reg.host());
    let pulled = home
        .pull(&Client::new(o).unwrap(), &reference)
        .await
        .unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    let form = tokens.last_query().unwrap();
    for part in [
        "grant_type=refresh_token",
        "refresh_token=refresh-me-123",
        "service=registry-fixture",
        "client_id=boxlite",
    ] {
        assert!(form.contains(part), "token request {form:?} lacks {part}");
    }
    assert!(form.contains("scope=repository"), "{form}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authorization_is_not_sent_past_a_redirect() {
    // A registry that wants Basic auth and redirects blob GETs to storage on another origin.
    let api = FakeRegistry::start().unwrap();
    let storage = FakeRegistry::start().unwrap();
    let l = layer(1600, 2, 30_000);
    let spec = ImageSpec::new(vec![l.clone()]);
    let config = spec.config_json();
    let config_digest = api.blob("app", &config);
    let manifest = spec.manifest_json(&config_digest, config.len() as u64);
    api.manifest("app", "v1", MediaKind::Oci.manifest_type(), &manifest);
    api.set(
        "GET",
        "/v2/",
        Canned::new(401, "{}").header("WWW-Authenticate", "Basic realm=\"x\""),
    );
    api.set(
        "GET",
        &format!("/v2/app/blobs/{}", l.digest()),
        Canned::new(307, "").header(
            "Location",
            &format!(
                "http://{}/bucket/{}?sig=abc",
                storage.host(),
                l.digest_hex()
            ),
        ),
    );
    storage.set(
        "GET",
        &format!("/bucket/{}", l.digest_hex()),
        Canned::new(200, l.bytes()).header("Content-Type", "application/octet-stream"),
    );

    let dir = tempfile::tempdir().unwrap();
    let config_path = docker_config(dir.path(), &api.host(), USER, PASSWORD);
    let client = Client::new(options_with_config(&config_path)).unwrap();
    let home = Home::new();
    let reference = format!("{}/app:v1", api.host());
    let pulled = home.pull(&client, &reference).await.unwrap();
    assert_eq!(pulled.layers_downloaded, 1);
    assert!(home.has_blob(l.digest()));
    assert!(
        home.cache
            .lookup(&pulled.record.layers[0].diff_id)
            .unwrap()
            .is_some()
    );

    let api_log = api.requests();
    let blob_hops: Vec<_> = api_log
        .iter()
        .filter(|r| r.path.ends_with(l.digest()))
        .collect();
    assert!(!blob_hops.is_empty(), "{api_log:?}");
    assert!(blob_hops.iter().all(|r| r.had_authorization), "{api_log:?}");
    assert!(
        api_log
            .iter()
            .filter(|r| r.path.contains("/manifests/"))
            .all(|r| r.had_authorization),
        "{api_log:?}"
    );
    let storage_log = storage.requests();
    assert!(!storage_log.is_empty());
    assert!(
        storage_log.iter().all(|r| !r.had_authorization),
        "Authorization leaked to storage: {storage_log:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_redirected_by_a_real_registry_proxy_arrive() {
    // S3 behind Docker Hub: the proxy answers blob GETs with 307 to its second listener.
    let reg = Registry::builder().start().unwrap();
    let img = support::push(
        &reg.host(),
        "redir",
        "v1",
        three_layers(1700),
        MediaKind::Oci,
    );
    let proxy = Proxy::in_front_of(&reg).unwrap();
    proxy.set_fault(Fault::RedirectBlobs);
    let home = Home::new();
    let reference = format!("{}/redir:v1", proxy.host());
    let pulled = home.pull(&support::client(), &reference).await.unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    let log = proxy.requests();
    let redirected = log
        .iter()
        .filter(|r| r.path.starts_with("/_storage/"))
        .count();
    assert_eq!(
        redirected, 4,
        "config and three layers via storage: {log:?}"
    );
}
