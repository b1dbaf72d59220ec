//! The crate's one error type.

use std::io;
use std::net::SocketAddr;

use crate::publish::Protocol;

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A published port's host address could not be bound (in use, or not ours).
    #[error("cannot publish {protocol} port {} (host address {addr})", addr.port())]
    Publish {
        /// The published port's protocol.
        protocol: Protocol,
        /// The host address asked for.
        addr: SocketAddr,
        /// What the bind said.
        #[source]
        source: io::Error,
    },
    /// The event loop (epoll, its waker) could not be set up.
    #[error("cannot set up the stack's event loop")]
    Poll(#[source] io::Error),
    /// The guest's socket could not be made non-blocking or registered.
    #[error("cannot use the guest's socket")]
    Guest(#[source] io::Error),
    /// The stack's thread could not be spawned.
    #[error("cannot start the stack's thread")]
    Thread(#[source] io::Error),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;
