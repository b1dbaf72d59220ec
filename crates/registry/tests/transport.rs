//! TLS registries (trusted through an extra CA, refused without it) and HTTPS through a
//! CONNECT proxy, with and without `no_proxy`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use registry::{Client, ProxyOptions};
use registry_fixture::Registry;
use registry_fixture::images::MediaKind;
use support::{Home, assert_err_contains, assert_pulled, expect_err, layer, options, push};

/// A plain registry to push to and a TLS twin serving the same storage.
fn tls_pair() -> (Registry, Registry) {
    let plain = Registry::builder().start().unwrap();
    let tls = Registry::builder()
        .tls(true)
        .storage_dir(plain.storage_dir())
        .start()
        .unwrap();
    (plain, tls)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_is_pulled_over_https_with_its_ca_and_refused_without() {
    let (plain, tls) = tls_pair();
    let img = push(
        &plain.host(),
        "secure",
        "v1",
        support::three_layers(4000),
        MediaKind::Oci,
    );
    let reference = format!("{}/secure:v1", tls.host());

    let mut o = options();
    o.extra_ca_pem = vec![tls.ca_pem().unwrap()];
    let home = Home::new();
    let pulled = home
        .pull(&Client::new(o).unwrap(), &reference)
        .await
        .unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    assert_eq!(pulled.served_by, tls.host());

    // Untrusted: HTTPS fails on the certificate, and plain HTTP to a TLS port is no
    // registry; the error must say why HTTPS failed rather than blame an HTTP answer.
    let home = Home::new();
    let err = expect_err(home.pull(&support::client(), &reference).await);
    assert_err_contains(&err, &[&tls.host(), "https://", "certificate"]);
    assert_eq!(home.records(), 0);

    // A CA file that is not PEM is refused up front.
    let mut o = options();
    o.extra_ca_pem = vec![b"not a certificate".to_vec()];
    let err = Client::new(o).unwrap_err();
    assert_err_contains(&err, &["PEM"]);
}

/// A tiny HTTP CONNECT proxy: it counts tunnels and the targets asked for.
struct ConnectProxy {
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = tunnel(stream, &seen);
                });
            }
        });
        ConnectProxy { addr, targets }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connects(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

/// Answers one CONNECT and splices the two connections until either side closes.
fn tunnel(client: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let mut w = &client;
        w.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    let target = target.to_string();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    seen.lock().unwrap().push(target.clone());
    let upstream = TcpStream::connect(&target)?;
    let mut w = &client;
    w.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    // Anything the client sent after the head went into the reader's buffer.
    let mut up_w = &upstream;
    up_w.write_all(reader.buffer())?;
    let (mut up_r, mut down_w) = (upstream.try_clone()?, client.try_clone()?);
    let down = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut down_w);
        let _ = down_w.shutdown(std::net::Shutdown::Write);
    });
    let mut client_r = client;
    let mut up_w = upstream;
    let _ = std::io::copy(&mut client_r, &mut up_w);
    let _ = up_w.shutdown(std::net::Shutdown::Write);
    let _ = down.join();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn https_goes_through_the_proxy_unless_no_proxy_says_otherwise() {
    let (plain, tls) = tls_pair();
    let img = push(
        &plain.host(),
        "proxied",
        "v1",
        vec![layer(4100, 2, 50_000)],
        MediaKind::Oci,
    );
    let reference = format!("{}/proxied:v1", tls.host());
    let proxy = ConnectProxy::start();

    let mut o = options();
    o.extra_ca_pem = vec![tls.ca_pem().unwrap()];
    o.proxy = ProxyOptions {
        https: Some(proxy.url()),
        ..ProxyOptions::default()
    };
    let home = Home::new();
    let pulled = home
        .pull(&Client::new(o.clone()).unwrap(), &reference)
        .await
        .unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    let connects = proxy.connects();
    assert!(!connects.is_empty(), "the pull did not use the proxy");
    assert!(connects.iter().all(|t| *t == tls.host()), "{connects:?}");

    // no_proxy exempts the registry: not one tunnel more.
    o.proxy.no_proxy = Some("example.com,127.0.0.1".to_string());
    let home = Home::new();
    let pulled = home
        .pull(&Client::new(o).unwrap(), &reference)
        .await
        .unwrap();
    assert_pulled(&home, &pulled, &img, &reference);
    assert_eq!(proxy.connects().len(), connects.len());
}
