//! A user-mode network stack for boxes, on smoltcp.
//!
//! The guest's network card speaks a stream of Ethernet frames, each behind a 4-byte
//! big-endian length (QEMU's `-netdev stream`, boxlite-vmm's net device, passt's protocol),
//! over a Unix socket pair. The stack terminates the guest's TCP and UDP and opens host
//! sockets on its behalf, so every flow meets one [`Gate`]: the policy. It runs on one thread
//! of the supervisor; the VM process keeps no network of its own.

pub mod addr;
mod device;
pub mod dns;
pub mod error;
pub mod frames;
pub mod gate;
pub mod policy;
mod publish;
pub mod sniff;
mod stack;
mod stats;
mod tcp;
mod udp;

pub use error::{Error, Result};
pub use gate::{DenyGate, Dns, Egress, Gate, Inspection, OpenGate};
#[doc(hidden)]
pub use policy::fuzz::{fuzz_dns, fuzz_rule, fuzz_sniff};
pub use policy::{DenialCounter, Policy, PolicyError, PolicyOptions, Rule, RuleError};
pub use publish::{Protocol, Publish, Published};
#[doc(hidden)]
pub use stack::fuzz_frames;
pub use stack::{Config, Limits, Running, Stack};
pub use stats::Stats;

/// The limits' defaults, each with why it is that number.
pub mod limits {
    pub use crate::stack::{
        CONNECT_TIMEOUT, DNS_TIMEOUT, HANDSHAKE_TIMEOUT, INSPECT_TIMEOUT, MAX_DNS_PENDING,
        MAX_INSPECT_BYTES, MAX_PENDING_CONNECTS, MAX_TCP_FLOWS, MAX_UDP_BINDINGS, TCP_BUFFER,
        UDP_IDLE_TIMEOUT,
    };
}
