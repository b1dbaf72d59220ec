//! A user-mode network stack for boxes, on smoltcp.
//!
//! The guest's network card speaks a stream of Ethernet frames, each behind a 4-byte
//! big-endian length (QEMU's `-netdev stream`, boxlite-vmm's net device, passt's protocol),
//! over a Unix socket pair. The stack terminates the guest's TCP and UDP and opens host
//! sockets on its behalf, so every flow meets one [`Gate`]: the policy. It runs on one thread
//! of the supervisor; the VM process keeps no network of its own.

pub mod addr;
pub mod gate;

pub use gate::{Dns, Egress, Gate, Inspection, OpenGate};
