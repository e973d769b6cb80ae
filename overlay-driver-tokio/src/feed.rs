//! Bounded broadcast feeds whose memory follows their use.
//!
//! The library hands deliveries, direct messages, kernel events and topic events to its
//! subscribers through these feeds. Each one behaves like `tokio::sync::broadcast` (the same
//! [`RecvError`] / [`TryRecvError`]: every receiver sees every value sent after it subscribed,
//! in order; one that falls `capacity` values behind loses the oldest and reads
//! `Lagged(lost)` once; `Closed` after the last sender is gone), but it holds only the values
//! some receiver has yet to read: nothing before the first subscriber, a few slots while the
//! readers keep up, up to `capacity` for a reader that falls behind (given back once it caught
//! up). `tokio::sync::broadcast` allocates all `capacity` slots when the channel is made
//! (1,024 per feed by default), whether or not anybody ever falls behind.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

pub use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Slots a feed's buffer keeps allocated however empty it gets (it grows past this only while a
/// reader is behind, and shrinks back once its readers caught up).
const MIN_SLOTS: usize = 8;

/// The sending side of a feed (cloneable; the feed closes when the last clone is dropped).
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// One subscriber's side of a feed: the values sent after it subscribed, in order.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Sequence number of the next value to read.
    next: u64,
    /// This receiver's key in the waker list.
    id: u64,
}

struct Shared<T> {
    capacity: usize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// Values some receiver has yet to read, oldest first; `values[0]` has number `head`.
    values: VecDeque<Slot<T>>,
    /// Number of `values[0]` (or of the next value sent, when empty).
    head: u64,
    receivers: usize,
    senders: usize,
    next_receiver_id: u64,
    /// Receivers waiting for a value, at most one waker each.
    waiting: Vec<(u64, Waker)>,
}

struct Slot<T> {
    value: T,
    /// Receivers that have yet to read it.
    unread: usize,
}

impl<T> State<T> {
    /// Number of the next value sent.
    fn tail(&self) -> u64 {
        self.head + self.values.len() as u64
    }

    /// Drops the read values at the front and gives back memory a past backlog left.
    fn release_read(&mut self) {
        while self.values.front().is_some_and(|slot| slot.unread == 0) {
            self.values.pop_front();
            self.head += 1;
        }
        self.shrink_if_sparse();
    }

    fn shrink_if_sparse(&mut self) {
        let cap = self.values.capacity();
        if cap > MIN_SLOTS && self.values.len() < cap / 4 {
            self.values
                .shrink_to((self.values.len() * 2).max(MIN_SLOTS));
        }
    }

    /// Wakes the waiting receivers (under the lock: the list keeps its allocation).
    fn wake_all(&mut self) {
        for (_, waker) in self.waiting.drain(..) {
            waker.wake();
        }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A feed of at most `capacity` unread values per receiver (at least 1), with its first sender.
/// Nothing is allocated for values until a receiver exists.
pub fn channel<T: Clone>(capacity: usize) -> Sender<T> {
    Sender {
        shared: Arc::new(Shared {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                values: VecDeque::new(),
                head: 0,
                receivers: 0,
                senders: 1,
                next_receiver_id: 0,
                waiting: Vec::new(),
            }),
        }),
    }
}

impl<T: Clone> Sender<T> {
    /// Sends `value` to every current receiver; with none it is dropped (and `false` returned).
    /// A receiver `capacity` values behind loses its oldest unread value.
    pub fn send(&self, value: T) -> bool {
        let mut state = self.shared.lock();
        if state.receivers == 0 {
            return false;
        }
        let unread = state.receivers;
        state.values.push_back(Slot { value, unread });
        if state.values.len() > self.shared.capacity {
            // The oldest is lost for whoever has not read it (they read `Lagged`).
            state.values.pop_front();
            state.head += 1;
        }
        state.wake_all();
        true
    }

    /// A receiver of the values sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        let mut state = self.shared.lock();
        state.receivers += 1;
        let id = state.next_receiver_id;
        state.next_receiver_id += 1;
        Receiver {
            shared: Arc::clone(&self.shared),
            next: state.tail(),
            id,
        }
    }

    /// Receivers now.
    pub fn receiver_count(&self) -> usize {
        self.shared.lock().receivers
    }

    /// Values held now for receivers that have yet to read them, and the slots allocated.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.values.len(), state.values.capacity())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.senders = state.senders.saturating_sub(1);
        if state.senders == 0 {
            state.wake_all();
        }
    }
}

impl<T: Clone> Receiver<T> {
    /// The next value; `Lagged(n)` once after this receiver lost `n` values by falling
    /// behind; `Closed` when every sender is gone and everything sent was read. Cancel-safe:
    /// a value is taken only when this returns it.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next value if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match take(&mut self.next, &mut state) {
            Some(Ok(value)) => Ok(value),
            Some(Err(lost)) => Err(TryRecvError::Lagged(lost)),
            None if state.senders == 0 => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        let mut state = self.shared.lock();
        match take(&mut self.next, &mut state) {
            Some(Ok(value)) => Poll::Ready(Ok(value)),
            Some(Err(lost)) => Poll::Ready(Err(RecvError::Lagged(lost))),
            None if state.senders == 0 => Poll::Ready(Err(RecvError::Closed)),
            None => {
                match state.waiting.iter_mut().find(|(id, _)| *id == self.id) {
                    Some((_, waker)) => waker.clone_from(cx.waker()),
                    None => state.waiting.push((self.id, cx.waker().clone())),
                }
                Poll::Pending
            }
        }
    }
}

/// The next value for a receiver at `next` (`Ok`), what it lost since its last read (`Err`),
/// or `None` when it has read everything.
fn take<T: Clone>(next: &mut u64, state: &mut State<T>) -> Option<Result<T, u64>> {
    if *next < state.head {
        let lost = state.head - *next;
        *next = state.head;
        return Some(Err(lost));
    }
    let index = usize::try_from(*next - state.head).ok()?;
    let slot = state.values.get_mut(index)?;
    slot.unread = slot.unread.saturating_sub(1);
    *next += 1;
    if index == 0 && slot.unread == 0 {
        // The last reader of the oldest value takes it instead of a clone.
        let slot = state.values.pop_front()?;
        state.head += 1;
        state.release_read();
        return Some(Ok(slot.value));
    }
    Some(Ok(slot.value.clone()))
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receivers = state.receivers.saturating_sub(1);
        state.waiting.retain(|(id, _)| *id != self.id);
        let start = usize::try_from(self.next.saturating_sub(state.head)).unwrap_or(usize::MAX);
        for slot in state.values.iter_mut().skip(start) {
            slot.unread = slot.unread.saturating_sub(1);
        }
        state.release_read();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("feed::Sender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("feed::Receiver")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_kept_without_a_receiver() {
        let tx = channel(4);
        assert!(!tx.send(1u32));
        assert_eq!(tx.held(), (0, 0));
        let mut rx = tx.subscribe();
        assert!(tx.send(2));
        assert_eq!(rx.try_recv(), Ok(2), "the value sent before is gone");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(tx.held().0, 0, "read by its only receiver: released");
    }

    #[test]
    fn every_receiver_reads_every_value_in_order() {
        let tx = channel(16);
        let mut a = tx.subscribe();
        tx.send(1u32);
        let mut b = tx.subscribe();
        tx.send(2);
        tx.send(3);
        assert_eq!(tx.held().0, 3);
        assert_eq!(b.try_recv(), Ok(2));
        assert_eq!(b.try_recv(), Ok(3));
        assert_eq!(tx.held().0, 3, "a has read nothing yet");
        assert_eq!(a.try_recv(), Ok(1));
        assert_eq!(a.try_recv(), Ok(2));
        assert_eq!(tx.held().0, 1);
        assert_eq!(a.try_recv(), Ok(3));
        assert_eq!(tx.held().0, 0);
        assert_eq!(a.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn grows_only_with_the_backlog_and_gives_it_back() {
        let tx = channel(1024);
        let mut rx = tx.subscribe();
        for i in 0..10_000u32 {
            tx.send(i);
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert!(
            tx.held().1 <= MIN_SLOTS,
            "a reader that keeps up: {:?}",
            tx.held()
        );
        for i in 0..1000u32 {
            tx.send(i);
        }
        assert_eq!(tx.held().0, 1000);
        assert!(tx.held().1 >= 1000);
        for i in 0..1000u32 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(tx.held().0, 0);
        assert!(tx.held().1 <= MIN_SLOTS, "caught up: {:?}", tx.held());
    }

    #[test]
    fn a_reader_past_the_bound_loses_the_oldest_and_reads_how_many_once() {
        let tx = channel(4);
        let mut slow = tx.subscribe();
        let mut fast = tx.subscribe();
        for i in 0..10u32 {
            tx.send(i);
            assert_eq!(fast.try_recv(), Ok(i));
        }
        assert_eq!(tx.held().0, 4, "bounded at the capacity");
        assert!(tx.held().1 < 16);
        assert_eq!(slow.try_recv(), Err(TryRecvError::Lagged(6)));
        assert_eq!(slow.try_recv(), Ok(6));
        assert_eq!(slow.try_recv(), Ok(7));
        tx.send(10);
        drop(slow);
        assert_eq!(tx.held().0, 1, "only the fast reader's unread value");
        assert_eq!(fast.try_recv(), Ok(10));
        assert_eq!(tx.held().0, 0);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_and_ends_when_the_senders_are_gone() {
        let tx = channel(4);
        let mut rx = tx.subscribe();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match rx.recv().await {
                    Ok(v) => got.push(v),
                    Err(RecvError::Lagged(n)) => panic!("lost {n}"),
                    Err(RecvError::Closed) => return got,
                }
            }
        });
        let tx2 = tx.clone();
        tokio::task::yield_now().await;
        tx.send(1u32);
        tokio::task::yield_now().await;
        tx2.send(2);
        drop(tx);
        tx2.send(3);
        drop(tx2);
        assert_eq!(reader.await.ok(), Some(vec![1, 2, 3]));
    }

    #[test]
    fn the_last_reader_takes_the_value_without_a_clone() {
        let tx = channel(4);
        let mut a = tx.subscribe();
        let mut b = tx.subscribe();
        tx.send(Arc::new(5u32));
        let first = a.try_recv().ok();
        assert_eq!(first.as_ref().map(Arc::strong_count), Some(2));
        drop(first);
        let last = b.try_recv().ok();
        assert_eq!(last.as_ref().map(Arc::strong_count), Some(1));
    }
}
