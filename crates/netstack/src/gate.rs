//! The seam between the stack (mechanism) and the policy: the stack asks, the gate answers.
//!
//! The stack calls a [`Gate`] from its one thread for every new flow and every DNS message,
//! so a gate needs no locking of its own. A gate records its own denials (it knows the rule).

use std::net::SocketAddr;

/// The policy's answers to the stack's questions.
pub trait Gate: Send + 'static {
    /// A guest's new TCP connection to `dst`, which may be the gateway (the host).
    fn connect(&mut self, dst: SocketAddr) -> Egress;
    /// The first bytes of a flow [`Egress::Inspect`] held, before any reach the host; asked
    /// again with all bytes so far while it answers [`Inspection::NeedMore`].
    fn inspect(&mut self, dst: SocketAddr, first: &[u8]) -> Inspection;
    /// A guest's UDP datagram to `dst`, on a binding (guest port, `dst`) not yet open.
    fn datagram(&mut self, dst: SocketAddr) -> Egress;
    /// A DNS query the guest sent to the stack's DNS address.
    fn dns_query(&mut self, query: &[u8]) -> Dns;
    /// An upstream server's reply to a forwarded query; what the guest gets (`None`: drop).
    fn dns_reply(&mut self, reply: &[u8]) -> Option<Vec<u8>>;
}

/// What becomes of a new flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Egress {
    /// Open a host socket to this address (the gateway maps to the host's loopback).
    Allow(SocketAddr),
    /// Accept the guest's side, hold its first bytes for [`Gate::inspect`], then connect to
    /// this address.
    Inspect(SocketAddr),
    /// Refuse: TCP gets a reset at once, UDP is dropped.
    Deny,
}

/// The verdict on a held flow's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inspection {
    /// Not enough to tell yet; the stack asks again with more (or gives up at its cap).
    NeedMore,
    /// Connect and pass the held bytes on.
    Allow,
    /// Reset the flow.
    Deny,
}

/// What becomes of a guest's DNS query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dns {
    /// Answer the guest with this message at once.
    Answer(Vec<u8>),
    /// Send this message to the upstream servers; their reply goes through
    /// [`Gate::dns_reply`].
    Forward(Vec<u8>),
    /// Drop the query.
    Drop,
}

/// A gate that allows every flow to where the guest asked and forwards every query: for the
/// stack's own tests and benchmarks, never a box's policy.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenGate;

impl Gate for OpenGate {
    fn connect(&mut self, dst: SocketAddr) -> Egress {
        Egress::Allow(dst)
    }

    fn inspect(&mut self, _: SocketAddr, _: &[u8]) -> Inspection {
        Inspection::Allow
    }

    fn datagram(&mut self, dst: SocketAddr) -> Egress {
        Egress::Allow(dst)
    }

    fn dns_query(&mut self, query: &[u8]) -> Dns {
        Dns::Forward(query.to_vec())
    }

    fn dns_reply(&mut self, reply: &[u8]) -> Option<Vec<u8>> {
        Some(reply.to_vec())
    }
}

/// A gate that refuses every flow and drops every query: for the fuzz entry and for tests
/// of a guest whose every frame draws a reset; it opens no host socket.
#[derive(Debug, Default, Clone, Copy)]
pub struct DenyGate;

impl Gate for DenyGate {
    fn connect(&mut self, _: SocketAddr) -> Egress {
        Egress::Deny
    }

    fn inspect(&mut self, _: SocketAddr, _: &[u8]) -> Inspection {
        Inspection::Deny
    }

    fn datagram(&mut self, _: SocketAddr) -> Egress {
        Egress::Deny
    }

    fn dns_query(&mut self, _: &[u8]) -> Dns {
        Dns::Drop
    }

    fn dns_reply(&mut self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
}
