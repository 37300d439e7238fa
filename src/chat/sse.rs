//! The event-stream response body: first the replayed history and the current state, then every
//! new event of the channel as it is broadcast, with a keep-alive comment when idle.
//!
//! Hand-written as an `http_body::Body` (rather than a task per subscriber feeding a channel)
//! so a subscriber costs one broadcast receiver and one timer, no extra task and no extra
//! buffer: with 10,000 subscribers that is what keeps memory per subscriber low.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::debug;

use super::{SubscriberGuard, KEEPALIVE_INTERVAL};

/// A subscriber's `text/event-stream` body. Dropping it (the client went away, or hyper gave up
/// on it) unregisters the subscriber.
pub struct SseBody {
    pending: VecDeque<Bytes>,
    rx: BroadcastStream<Bytes>,
    keepalive: Interval,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
    guard: SubscriberGuard,
}

impl SseBody {
    pub(super) fn new(
        pending: VecDeque<Bytes>,
        rx: broadcast::Receiver<Bytes>,
        shutdown: CancellationToken,
        guard: SubscriberGuard,
    ) -> Self {
        let mut keepalive =
            tokio::time::interval_at(Instant::now() + KEEPALIVE_INTERVAL, KEEPALIVE_INTERVAL);
        keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            pending,
            rx: BroadcastStream::new(rx),
            keepalive,
            shutdown: Box::pin(shutdown.cancelled_owned()),
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
        if this.shutdown.as_mut().poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.rx).poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => return Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                // Too slow: end the stream. The browser reconnects with Last-Event-ID and
                // replays from the history; the others never waited for this one.
                debug!(missed = n, "chat subscriber too slow; disconnecting");
                this.guard.lagged();
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.keepalive.poll_tick(cx).is_ready() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b": keep-alive\n\n",
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
