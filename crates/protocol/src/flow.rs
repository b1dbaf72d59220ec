//! Per-stream flow-control bookkeeping, without I/O.
//!
//! A sender may have at most the credit its receiver granted in flight. The receiver starts
//! the peer with [`INITIAL_WINDOW`] and grants back what its consumer took out of its buffer,
//! in batches of at least half a window so WINDOW frames stay rare. The invariant
//! `buffered + outstanding + pending == INITIAL_WINDOW` (see [`RecvWindow`]) is why a
//! receiver never holds more than `INITIAL_WINDOW` bytes of one stream.

use crate::error::{Error, Result};
use crate::frame::INITIAL_WINDOW;

/// Credit the receiver accumulates before granting it in one WINDOW frame.
///
/// Half a window: the sender still has the other half to keep the link busy while the
/// WINDOW frame travels, and there is one WINDOW frame per 128 KiB consumed rather than
/// one per read.
pub const GRANT_THRESHOLD: u32 = INITIAL_WINDOW / 2;

/// The sending side of one stream: how much may be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    available: u32,
}

impl Default for SendWindow {
    fn default() -> Self {
        SendWindow::new()
    }
}

impl SendWindow {
    /// A window of [`INITIAL_WINDOW`].
    pub fn new() -> SendWindow {
        SendWindow {
            available: INITIAL_WINDOW,
        }
    }

    /// Bytes that may be sent now.
    pub fn available(&self) -> u32 {
        self.available
    }

    /// Takes `n` bytes of the window for a DATA frame; `n` must not exceed [`Self::available`].
    pub fn consume(&mut self, n: u32) -> Result<()> {
        self.available = self.available.checked_sub(n).ok_or_else(|| {
            Error::FlowControl(format!(
                "sending {n} bytes with only {} of window",
                self.available
            ))
        })?;
        Ok(())
    }

    /// Adds the receiver's `credit`; an overflow past `u32::MAX` means a broken receiver.
    pub fn grant(&mut self, credit: u32) -> Result<()> {
        self.available = self.available.checked_add(credit).ok_or_else(|| {
            Error::FlowControl(format!(
                "the peer granted {credit} bytes on top of {}, overflowing the window",
                self.available
            ))
        })?;
        Ok(())
    }
}

/// The receiving side of one stream: what the peer may still send, what is buffered, and
/// when to grant more.
///
/// `buffered + outstanding + pending` is always `INITIAL_WINDOW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvWindow {
    /// Credit the peer holds: bytes it may send without hearing from us.
    outstanding: u32,
    /// Bytes received and not yet consumed.
    buffered: u32,
    /// Bytes consumed but not yet granted back.
    pending: u32,
}

impl Default for RecvWindow {
    fn default() -> Self {
        RecvWindow::new()
    }
}

impl RecvWindow {
    /// The state at the start of a stream: the peer holds the whole [`INITIAL_WINDOW`].
    pub fn new() -> RecvWindow {
        RecvWindow {
            outstanding: INITIAL_WINDOW,
            buffered: 0,
            pending: 0,
        }
    }

    /// Accounts `n` received bytes; more than the peer's credit is a flow-control violation.
    pub fn on_data(&mut self, n: u32) -> Result<()> {
        self.outstanding = self.outstanding.checked_sub(n).ok_or_else(|| {
            Error::FlowControl(format!(
                "the peer sent {n} bytes with only {} of credit",
                self.outstanding
            ))
        })?;
        self.buffered += n;
        Ok(())
    }

    /// Accounts `n` bytes the consumer took out of the buffer (at most [`Self::buffered`]);
    /// returns the credit to grant now, if enough has accumulated.
    pub fn on_consume(&mut self, n: u32) -> Option<u32> {
        let n = n.min(self.buffered);
        self.buffered -= n;
        self.pending += n;
        if self.pending >= GRANT_THRESHOLD {
            let credit = self.pending;
            self.outstanding += credit;
            self.pending = 0;
            Some(credit)
        } else {
            None
        }
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> u32 {
        self.buffered
    }

    /// Credit the peer holds.
    pub fn outstanding(&self) -> u32 {
        self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn send_window_blocks_at_zero_and_reopens_on_grant() {
        let mut w = SendWindow::new();
        w.consume(INITIAL_WINDOW).unwrap();
        assert_eq!(w.available(), 0);
        assert!(w.consume(1).is_err());
        w.grant(10).unwrap();
        assert_eq!(w.available(), 10);
    }

    #[test]
    fn send_window_overflow_is_a_violation() {
        let mut w = SendWindow::new();
        let e = w.grant(u32::MAX).unwrap_err();
        assert!(e.is_fatal(), "{e}");
    }

    #[test]
    fn receiver_rejects_data_beyond_credit() {
        let mut r = RecvWindow::new();
        r.on_data(INITIAL_WINDOW).unwrap();
        let e = r.on_data(1).unwrap_err();
        assert!(matches!(e, Error::FlowControl(_)), "{e}");
    }

    #[test]
    fn credit_is_granted_after_half_a_window() {
        let mut r = RecvWindow::new();
        r.on_data(INITIAL_WINDOW).unwrap();
        assert_eq!(r.on_consume(GRANT_THRESHOLD - 1), None);
        assert_eq!(r.on_consume(1), Some(GRANT_THRESHOLD));
        assert_eq!(r.outstanding(), GRANT_THRESHOLD);
    }

    #[test]
    fn a_stalled_sender_is_always_released_by_a_draining_reader() {
        // The sender is stuck exactly when outstanding is 0; consuming everything buffered
        // must then produce a grant, or both ends would wait forever.
        let mut r = RecvWindow::new();
        r.on_data(100).unwrap();
        assert_eq!(r.on_consume(100), None);
        r.on_data(INITIAL_WINDOW - 100).unwrap();
        assert_eq!(r.outstanding(), 0);
        let credit = r.on_consume(r.buffered()).unwrap();
        assert_eq!(credit, INITIAL_WINDOW);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send(u32),
        Read(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1..=64 * 1024u32).prop_map(Op::Send),
            (0..=200 * 1024u32).prop_map(Op::Read),
        ]
    }

    proptest! {
        /// A sender that respects its window and a receiver that grants as it consumes:
        /// the receiver never buffers more than INITIAL_WINDOW, the sender never violates,
        /// and the invariant holds after every step.
        #[test]
        fn receiver_never_holds_more_than_the_window(ops in proptest::collection::vec(op(), 1..300)) {
            let mut send = SendWindow::new();
            let mut recv = RecvWindow::new();
            let mut in_flight: Vec<u32> = Vec::new();
            for op in ops {
                match op {
                    Op::Send(n) => {
                        let n = n.min(send.available());
                        if n > 0 {
                            send.consume(n).unwrap();
                            in_flight.push(n);
                        }
                        // Deliver everything in flight.
                        for n in in_flight.drain(..) {
                            recv.on_data(n).unwrap();
                        }
                    }
                    Op::Read(n) => {
                        let n = n.min(recv.buffered());
                        if let Some(credit) = recv.on_consume(n) {
                            send.grant(credit).unwrap();
                        }
                    }
                }
                prop_assert!(recv.buffered() <= INITIAL_WINDOW);
                prop_assert_eq!(recv.buffered() + recv.outstanding() + recv.pending, INITIAL_WINDOW);
                prop_assert!(send.available() <= recv.outstanding());
            }
        }
    }
}
