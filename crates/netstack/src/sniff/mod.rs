//! Names a flow's first bytes claim: a TLS ClientHello's SNI, an HTTP/1.x request's Host.
//! The policy checks them against its domain rules before any byte leaves the box.

pub mod http;
pub mod tls;

/// What a flow's first bytes say about the name it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// A prefix of something readable; ask again with more bytes.
    NeedMore,
    /// The name asked for, lowercase, validated as a host name.
    Name(String),
    /// A well-formed hello or request that names no host (or names an address).
    NoName,
    /// Not the protocol, or malformed, or over the caps.
    Unreadable,
}

/// Reads `first` as TLS if it starts like a TLS handshake record, else as HTTP/1.x: the
/// port is not trusted to say which.
pub fn sniff(first: &[u8]) -> Sniff {
    match first.first() {
        None => Sniff::NeedMore,
        Some(&tls::CONTENT_HANDSHAKE) => tls::server_name(first),
        Some(_) => http::host(first),
    }
}
