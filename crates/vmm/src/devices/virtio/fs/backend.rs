//! The vhost-user frontend side of the daemon connection: the handshake when the device is
//! built, starting the rings when the guest sets `DRIVER_OK`, stopping them on a reset.
//!
//! Every message waits for its reply (`REPLY_ACK` where the daemon offers it), on the
//! thread that programs the device: a vCPU thread, inside its register write. That keeps a
//! reset synchronous (the daemon has stopped touching the rings before the guest's write of
//! 0 to `Status` completes). A daemon that died fails the step at once (`EPIPE`, or end of
//! file); one that lives but never answers holds that vCPU, as it would under QEMU: the
//! frontend retries a timed-out receive forever, so socket timeouts cannot bound it, and
//! the host's stop (`Machine::run`'s deadline) still ends the VM.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};
use crate::memory::GuestMemory;

/// The protocol features we need: several queues (virtio-fs has at least two) and an
/// acknowledgement of every request. The daemon reads kicks from the eventfds, not from the
/// socket, so without the acknowledgements a guest's first kick could reach it before it
/// processed `SET_VRING_CALL`, and the answer's interrupt would be lost; with them, a
/// refused request also fails the step that sent it.
const PROTOCOL_FEATURES: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);

/// A connection to the daemon, owned (`SET_OWNER`) and with its features known.
pub struct Backend {
    frontend: Frontend,
    socket: RawFd,
    tag: String,
    features: u64,
    queues: usize,
    /// Rings the daemon runs: stopped on reset.
    started: usize,
}

impl Backend {
    /// Takes over `stream` and does the handshake for a device of `queues` queues.
    pub fn connect(stream: UnixStream, tag: &str, queues: usize) -> Result<Backend> {
        let err = |what| move |e: std::io::Error| vhost_error(tag, what, e);
        // An inherited socket may be non-blocking; the frontend expects whole messages.
        stream
            .set_nonblocking(false)
            .map_err(err("making the socket blocking"))?;
        let socket = stream.as_raw_fd();
        let mut frontend = Frontend::from_stream(stream, queues as u64);
        let fail = |what| move |e: vhost::Error| vhost_error(tag, what, e);
        frontend.set_owner().map_err(fail("SET_OWNER"))?;
        let features = frontend.get_features().map_err(fail("GET_FEATURES"))?;
        let needed = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() | super::super::F_VERSION_1;
        if features & needed != needed {
            return Err(vhost_error(
                tag,
                "GET_FEATURES",
                format!("features {features:#x} lack VIRTIO_F_VERSION_1 or PROTOCOL_FEATURES"),
            ));
        }
        let offered = frontend
            .get_protocol_features()
            .map_err(fail("GET_PROTOCOL_FEATURES"))?;
        if !offered.contains(PROTOCOL_FEATURES) {
            return Err(vhost_error(
                tag,
                "GET_PROTOCOL_FEATURES",
                format!("protocol features {offered:?} lack MQ or REPLY_ACK"),
            ));
        }
        frontend
            .set_protocol_features(PROTOCOL_FEATURES)
            .map_err(fail("SET_PROTOCOL_FEATURES"))?;
        // From here on every request waits for the daemon's acknowledgement.
        frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        let available = frontend.get_queue_num().map_err(fail("GET_QUEUE_NUM"))?;
        if available < queues as u64 {
            return Err(vhost_error(
                tag,
                "GET_QUEUE_NUM",
                format!("the daemon has {available} queues; virtio-fs needs {queues}"),
            ));
        }
        Ok(Backend {
            frontend,
            socket,
            tag: tag.to_string(),
            features,
            queues,
            started: 0,
        })
    }

    /// The virtio features the daemon offers.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The socket, for watching it for hangup and for seccomp rules.
    pub fn socket(&self) -> RawFd {
        self.socket
    }

    /// Hands the daemon guest memory and the rings, and starts them.
    pub fn start(
        &mut self,
        features: u64,
        mem: &GuestMemory,
        queues: &[Queue],
        kicks: &[Arc<EventFd>],
        calls: &[EventFd],
    ) -> Result<()> {
        let tag = self.tag.clone();
        let tag = tag.as_str();
        let fail = |what| move |e: vhost::Error| vhost_error(tag, what, e);
        // PROTOCOL_FEATURES here too: the rings then start disabled until SET_VRING_ENABLE.
        self.frontend
            .set_features(features | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits())
            .map_err(fail("SET_FEATURES"))?;
        let regions = mem
            .iter()
            .map(VhostUserMemoryRegionInfo::from_guest_region)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fail("SET_MEM_TABLE (guest memory must be a shared memfd)"))?;
        self.frontend
            .set_mem_table(&regions)
            .map_err(fail("SET_MEM_TABLE"))?;
        for (i, ((q, kick), call)) in queues.iter().zip(kicks).zip(calls).enumerate() {
            let n = u64::from(q.size());
            let ring = VringConfigData {
                queue_max_size: q.max_size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: host_address(mem, GuestAddress(q.desc_table()), 16 * n, tag)?,
                avail_ring_addr: host_address(mem, GuestAddress(q.avail_ring()), 6 + 2 * n, tag)?,
                used_ring_addr: host_address(mem, GuestAddress(q.used_ring()), 6 + 8 * n, tag)?,
                log_addr: None,
            };
            // Counted first: a ring the daemon half set up is stopped on reset all the same.
            self.started = i + 1;
            let f = &self.frontend;
            f.set_vring_num(i, q.size())
                .map_err(fail("SET_VRING_NUM"))?;
            f.set_vring_addr(i, &ring).map_err(fail("SET_VRING_ADDR"))?;
            f.set_vring_base(i, q.next_avail())
                .map_err(fail("SET_VRING_BASE"))?;
            // The call before the kick: the daemon may start the ring as soon as it has a
            // kick eventfd that is readable, and must have somewhere to signal its answers.
            f.set_vring_call(i, call).map_err(fail("SET_VRING_CALL"))?;
            f.set_vring_kick(i, kick).map_err(fail("SET_VRING_KICK"))?;
            self.frontend
                .set_vring_enable(i, true)
                .map_err(fail("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// Disables and stops every started ring (`GET_VRING_BASE`), so the daemon leaves guest
    /// memory alone, and a later start finds the rings disabled until it enables them.
    pub fn stop(&mut self) -> Result<()> {
        let started = std::mem::take(&mut self.started).min(self.queues);
        for i in 0..started {
            self.frontend
                .set_vring_enable(i, false)
                .map_err(|e| vhost_error(&self.tag, "SET_VRING_ENABLE", e))?;
            self.frontend
                .get_vring_base(i)
                .map_err(|e| vhost_error(&self.tag, "GET_VRING_BASE", e))?;
        }
        Ok(())
    }
}

/// The host address of the guest range `addr..addr+len`, which must lie in one region: the
/// daemon reaches the ring through it, in its own mapping of the same region.
fn host_address(mem: &GuestMemory, addr: GuestAddress, len: u64, tag: &str) -> Result<u64> {
    let slice = mem
        .get_slice(addr, len as usize)
        .map_err(|e| vhost_error(tag, "SET_VRING_ADDR", format!("ring at {:#x}: {e}", addr.0)))?;
    Ok(slice.ptr_guard().as_ptr() as u64)
}

fn vhost_error(tag: &str, what: &'static str, reason: impl std::fmt::Display) -> Error {
    Error::VhostUser {
        tag: tag.to_string(),
        what,
        reason: reason.to_string(),
    }
}
