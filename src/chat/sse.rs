//! The event-stream response body: first the replayed history and the current state, then every
//! new event of the channel as it is broadcast, and the channel's keep-alive comments.
//!
//! Hand-written as an `http_body::Body` (rather than a task per subscriber feeding a channel)
//! so a subscriber costs one broadcast receiver: no extra task, timer or buffer. Keep-alive
//! comments and the end of the stream come through the channel's ring like the events; with
//! 10,000 subscribers that is what keeps memory and the cost of a wake-up low.
//!
//! The ring is polled only when it woke this body ([`RingWake`]). hyper polls a body again
//! right after each frame, and once more after writing it; each of those polls of an empty
//! `broadcast::Receiver` takes the ring's one tail mutex (and a slot lock twice), which every
//! subscriber of the channel and the sender share: per delivered message, two or three
//! acquisitions of the same lock per subscriber, from every worker thread, while the sender
//! holds it to wake the others. With the flag, a poll that nothing woke is an atomic swap.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;
use tracing::debug;

use super::channel::Ring;
use super::{lock, SubscriberGuard};

/// A subscriber's `text/event-stream` body. Dropping it (the client went away, or hyper gave up
/// on it) unregisters the subscriber.
pub struct SseBody {
    pending: VecDeque<Bytes>,
    /// `None` when the channel was already closed: the body ends after `pending`.
    rx: Option<BroadcastStream<Ring>>,
    /// The waker the ring holds: it marks [`RingWake::woken`] and wakes the connection's task.
    ring_waker: Waker,
    wake: Arc<RingWake>,
    /// The task waker last handed to `wake` (compared without its lock).
    task: Option<Waker>,
    /// The ring was polled to `Pending` since its last wake-up: until it wakes us again it
    /// has nothing new, and polling it would only take its locks.
    armed: bool,
    done: bool,
    guard: SubscriberGuard,
}

/// What the ring wakes: a flag saying it did, and the connection task to wake in turn.
#[derive(Default)]
struct RingWake {
    woken: AtomicBool,
    /// Std mutex: held for a clone or a `wake_by_ref`, never across an `.await`; contended
    /// only between this subscriber's task and a sender waking it.
    task: Mutex<Option<Waker>>,
}

impl Wake for RingWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = lock(&self.task).as_ref() {
            w.wake_by_ref();
        }
    }
}

impl SseBody {
    pub(super) fn new(
        pending: VecDeque<Bytes>,
        rx: Option<broadcast::Receiver<Ring>>,
        guard: SubscriberGuard,
    ) -> Self {
        let wake = Arc::new(RingWake::default());
        Self {
            pending,
            rx: rx.map(BroadcastStream::new),
            ring_waker: Waker::from(wake.clone()),
            wake,
            task: None,
            armed: false,
            done: false,
            guard,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(b) = this.pending.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        let Some(rx) = this.rx.as_mut() else {
            this.done = true;
            return Poll::Ready(None);
        };
        if this.task.as_ref().is_none_or(|t| !t.will_wake(cx.waker())) {
            let t = cx.waker().clone();
            *lock(&this.wake.task) = Some(t.clone());
            this.task = Some(t);
        }
        // Cleared before the ring is polled: a wake-up from here on sets it again.
        let woken = this.wake.woken.swap(false, Ordering::AcqRel);
        if this.armed && !woken {
            return Poll::Pending;
        }
        this.armed = false;
        let mut ring_cx = Context::from_waker(&this.ring_waker);
        loop {
            match Pin::new(&mut *rx).poll_next(&mut ring_cx) {
                Poll::Ready(Some(Ok(Ring::Frame(b)))) => {
                    return Poll::Ready(Some(Ok(Frame::data(b))))
                }
                // Another address's ban: not for this stream.
                Poll::Ready(Some(Ok(Ring::Kick(a)))) if a != this.guard.addr => continue,
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    // Too slow: end the stream. The browser reconnects with Last-Event-ID and
                    // replays from the history; the others never waited for this one.
                    debug!(missed = n, "chat subscriber too slow; disconnecting");
                    this.guard.lagged();
                }
                // This address banned, the channel closed, or the ring gone.
                Poll::Ready(_) => {}
                Poll::Pending => {
                    this.armed = true;
                    return Poll::Pending;
                }
            }
            this.done = true;
            return Poll::Ready(None);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
