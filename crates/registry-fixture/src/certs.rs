//! Key and certificate material made with the openssl CLI, so the crate needs
//! no crypto dependencies: a CA plus a leaf for TLS registries, and an RSA
//! key plus self-signed certificate for signing tokens.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::run;

/// Files of a TLS server identity signed by its own throwaway CA.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// PEM of the CA, what clients must trust.
    pub ca_pem: Vec<u8>,
    /// Leaf certificate (PEM) for IP:127.0.0.1 and DNS:localhost.
    pub cert: PathBuf,
    /// The leaf's private key (PEM).
    pub key: PathBuf,
}

/// Makes a CA and a leaf for 127.0.0.1/localhost under `dir`. EC P-256 keys
/// because they generate in milliseconds and every TLS stack accepts them.
pub(crate) fn make_tls(dir: &Path) -> Result<TlsFiles> {
    let ca_key = dir.join("ca.key");
    let ca_crt = dir.join("ca.crt");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.crt");
    let ext = dir.join("server.ext");
    run(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "7", "-subj", "/CN=registry-fixture CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca_crt),
        None,
    )?;
    run(
        Command::new("openssl")
            .args(["req", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        None,
    )?;
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )?;
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-sha256", "-days", "7", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca_crt)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-CAcreateserial")
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
        None,
    )?;
    let ca_pem = std::fs::read(&ca_crt).context("reading the CA certificate")?;
    Ok(TlsFiles { ca_pem, cert, key })
}

/// A token-signing identity: RSA key (RS256 is what distribution's libtrust
/// handles best) and a self-signed certificate carried in the JWT's `x5c`.
#[derive(Debug, Clone)]
pub(crate) struct SigningCert {
    /// Private key (PEM) for `openssl dgst -sign`.
    pub key: PathBuf,
    /// Certificate PEM, the registry's `rootcertbundle`.
    pub cert_pem: Vec<u8>,
    /// Certificate DER, base64'd into `x5c`.
    pub cert_der: Vec<u8>,
}

/// Generates the signing key and certificate under `dir`.
pub(crate) fn make_signing_cert(dir: &Path) -> Result<SigningCert> {
    let key = dir.join("token.key");
    let crt = dir.join("token.crt");
    run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
            ])
            .args(["-subj", "/CN=registry-fixture token issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt),
        None,
    )?;
    let cert_der = run(
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&crt),
        None,
    )?;
    let cert_pem = std::fs::read(&crt).context("reading the token certificate")?;
    Ok(SigningCert {
        key,
        cert_pem,
        cert_der,
    })
}

/// RSASSA-PKCS1-v1_5 with SHA-256 over `input`, i.e. a JWT RS256 signature.
pub(crate) fn sign_rs256(key: &Path, input: &[u8]) -> Result<Vec<u8>> {
    run(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key),
        Some(input),
    )
    .context("signing a token with openssl")
}
