//! A broadcast channel whose slots are allocated by its first subscriber.
//!
//! `tokio::sync::broadcast` allocates every slot when the channel is made (about 180 bytes
//! each for a delivery), and a node has several feeds most applications never read. With no
//! receiver a broadcast send is dropped anyway, so creating the channel on the first
//! `subscribe` changes nothing an observer can see: an idle node holds no slots.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

/// A cloneable sender whose channel (of `capacity` slots) exists once someone subscribed.
pub(crate) struct LazySender<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    capacity: usize,
    channel: OnceLock<broadcast::Sender<T>>,
}

impl<T> Clone for LazySender<T> {
    fn clone(&self) -> Self {
        LazySender {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone> LazySender<T> {
    /// A sender of a channel of `capacity` slots (at least 1), not yet allocated.
    pub(crate) fn new(capacity: usize) -> Self {
        LazySender {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                channel: OnceLock::new(),
            }),
        }
    }

    /// Sends to the current receivers; with none (or none ever), the value is dropped.
    pub(crate) fn send(&self, value: T) {
        if let Some(tx) = self.inner.channel.get() {
            let _ = tx.send(value);
        }
    }

    /// A receiver of what is sent from now on (the first call allocates the channel).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<T> {
        self.inner
            .channel
            .get_or_init(|| broadcast::channel(self.inner.capacity).0)
            .subscribe()
    }

    /// Receivers now.
    pub(crate) fn receiver_count(&self) -> usize {
        self.inner
            .channel
            .get()
            .map_or(0, broadcast::Sender::receiver_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_allocated_or_kept_before_the_first_subscriber() {
        let tx = LazySender::new(4);
        tx.send(1u32);
        assert!(tx.inner.channel.get().is_none());
        assert_eq!(tx.receiver_count(), 0);
        let mut rx = tx.clone().subscribe();
        assert_eq!(tx.receiver_count(), 1);
        tx.send(2);
        assert_eq!(rx.try_recv().ok(), Some(2), "the value sent before is gone");
        assert!(rx.try_recv().is_err());
    }
}
