//! Per-execution events from the host, queued without ever blocking the connection.
//!
//! The reader task must not wait for an execution's task: that task may itself be waiting
//! for window credit that only the reader can deliver. So events are coalesced instead of
//! queued without bound: a new resize replaces a pending one, a signal already pending is
//! not queued twice (as with Unix signals), and cancel is kept once. The queue therefore
//! never holds more than `2 * MAX_SIGNAL + 2` events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::ExecEvent;

#[derive(Default)]
struct Queue {
    events: VecDeque<ExecEvent>,
    /// No more events will come (the connection closed).
    closed: bool,
    /// The receiving task dropped its handle.
    abandoned: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The host's signals, resizes and cancellation for one execution, in order (coalesced).
pub struct ExecEvents {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ExecEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecEvents")
            .field("pending", &self.shared.lock().events.len())
            .finish()
    }
}

/// The connection's end of an [`ExecEvents`].
pub(crate) struct EventSender {
    shared: Arc<Shared>,
}

/// A connected sender and receiver.
pub(crate) fn events() -> (EventSender, ExecEvents) {
    let shared = Arc::new(Shared::default());
    (
        EventSender {
            shared: shared.clone(),
        },
        ExecEvents { shared },
    )
}

impl ExecEvents {
    /// The next event; `None` once the connection has closed and nothing is pending.
    pub async fn recv(&mut self) -> Option<ExecEvent> {
        loop {
            {
                let mut q = self.shared.lock();
                if let Some(event) = q.events.pop_front() {
                    return Some(event);
                }
                if q.closed {
                    return None;
                }
            }
            // One receiver: a notification sent since the check is kept as a permit.
            self.shared.notify.notified().await;
        }
    }

    /// The next event if one is pending.
    pub fn try_recv(&mut self) -> Option<ExecEvent> {
        self.shared.lock().events.pop_front()
    }
}

impl Drop for ExecEvents {
    fn drop(&mut self) {
        self.shared.lock().abandoned = true;
    }
}

impl EventSender {
    /// Queues `event`, coalescing; never waits.
    pub(crate) fn send(&self, event: ExecEvent) {
        let mut q = self.shared.lock();
        if q.abandoned || q.closed {
            return;
        }
        match event {
            ExecEvent::Resize { .. } => {
                q.events.retain(|e| !matches!(e, ExecEvent::Resize { .. }));
            }
            _ if q.events.contains(&event) => return,
            _ => {}
        }
        q.events.push_back(event);
        drop(q);
        self.shared.notify.notify_one();
    }

    /// Whether the execution's task stopped listening.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.shared.lock().abandoned
    }

    /// Ends the stream of events (the receiver gets `None` after what is pending).
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.notify.notify_one();
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_coalesce_and_never_block() {
        let (tx, mut rx) = events();
        for i in 0..10_000u16 {
            tx.send(ExecEvent::Resize {
                rows: i + 1,
                cols: 80,
            });
            tx.send(ExecEvent::Signal {
                signal: i32::from(i % 64) + 1,
                group: i % 2 == 0,
            });
            tx.send(ExecEvent::Cancel);
        }
        let mut got = Vec::new();
        while let Some(e) = rx.try_recv() {
            got.push(e);
        }
        // 64 signals x 2 group flags can't all occur with i%64 and i%2 tied: 64 distinct.
        assert_eq!(got.len(), 64 + 1 + 1, "{got:?}");
        assert_eq!(
            got.last(),
            Some(&ExecEvent::Resize {
                rows: 10_000,
                cols: 80
            })
        );
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn recv_wakes_on_send_and_drop_is_seen() {
        let (tx, mut rx) = events();
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await;
            (first, rx)
        });
        tokio::task::yield_now().await;
        tx.send(ExecEvent::Cancel);
        let (first, rx) = waiter.await.unwrap();
        assert_eq!(first, Some(ExecEvent::Cancel));
        assert!(!tx.is_abandoned());
        drop(rx);
        assert!(tx.is_abandoned());
    }
}
