//! The host side of the console: a listening Unix socket and the one client it accepted,
//! or a stream given directly.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use crate::error::{Error, Result};

/// Where the console's bytes go.
pub struct Backend {
    listener: Option<UnixListener>,
    client: Option<UnixStream>,
}

/// The outcome of moving bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// This many bytes moved.
    Done(usize),
    /// The socket cannot move any now.
    WouldBlock,
    /// No client (never connected, or it went away).
    Disconnected,
}

impl Backend {
    /// Serves `listener`: accepts a client, and another after each disconnects.
    pub fn listen(listener: UnixListener) -> Result<Backend> {
        listener
            .set_nonblocking(true)
            .map_err(Error::io("making non-blocking", "the console socket"))?;
        Ok(Backend {
            listener: Some(listener),
            client: None,
        })
    }

    /// Uses a connected stream (no reconnection).
    pub fn stream(stream: UnixStream) -> Result<Backend> {
        stream
            .set_nonblocking(true)
            .map_err(Error::io("making non-blocking", "the console socket"))?;
        Ok(Backend {
            listener: None,
            client: Some(stream),
        })
    }

    /// The listener's fd, while no client is connected.
    pub fn listener_fd(&self) -> Option<RawFd> {
        match (&self.listener, &self.client) {
            (Some(l), None) => Some(l.as_raw_fd()),
            _ => None,
        }
    }

    /// The client's fd.
    pub fn client_fd(&self) -> Option<RawFd> {
        self.client.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Takes a pending connection, if any.
    pub fn accept(&mut self) {
        if self.client.is_some() {
            return;
        }
        if let Some(Ok((stream, _))) = self.listener.as_ref().map(UnixListener::accept) {
            if stream.set_nonblocking(true).is_ok() {
                self.client = Some(stream);
            }
        }
    }

    /// Drops the client.
    pub fn disconnect(&mut self) {
        self.client = None;
    }

    /// Sends what the socket takes of `data`.
    pub fn send(&mut self, data: &[u8]) -> Transfer {
        let Some(client) = self.client.as_mut() else {
            return Transfer::Disconnected;
        };
        match client.write(data) {
            Ok(n) => Transfer::Done(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Transfer::WouldBlock,
            Err(e) if e.kind() == ErrorKind::Interrupted => Transfer::Done(0),
            Err(_) => {
                self.client = None;
                Transfer::Disconnected
            }
        }
    }

    /// Receives into `buf`.
    pub fn receive(&mut self, buf: &mut [u8]) -> Transfer {
        let Some(client) = self.client.as_mut() else {
            return Transfer::Disconnected;
        };
        match client.read(buf) {
            Ok(0) => {
                self.client = None;
                Transfer::Disconnected
            }
            Ok(n) => Transfer::Done(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Transfer::WouldBlock,
            Err(e) if e.kind() == ErrorKind::Interrupted => Transfer::Done(0),
            Err(_) => {
                self.client = None;
                Transfer::Disconnected
            }
        }
    }
}
