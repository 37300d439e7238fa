//! The event-stream response body: first the replayed history and the current state, then every
//! new event of the channel as it is broadcast, and the channel's keep-alive comments.
//!
//! Hand-written as an `http_body::Body` (rather than a task per subscriber feeding a channel)
//! so a subscriber costs one broadcast receiver: no extra task, timer or buffer. Keep-alive
//! comments and the end of the stream come through the channel's ring like the events; with
//! 10,000 subscribers that is what keeps memory and the cost of a wake-up low.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::Stream;
use tracing::debug;

use super::{Ring, SubscriberGuard};

/// A subscriber's `text/event-stream` body. Dropping it (the client went away, or hyper gave up
/// on it) unregisters the subscriber.
pub struct SseBody {
    pending: VecDeque<Bytes>,
    /// `None` when the channel was already closed: the body ends after `pending`.
    rx: Option<BroadcastStream<Ring>>,
    done: bool,
    guard: SubscriberGuard,
}

impl SseBody {
    pub(super) fn new(
        pending: VecDeque<Bytes>,
        rx: Option<broadcast::Receiver<Ring>>,
        guard: SubscriberGuard,
    ) -> Self {
        Self {
            pending,
            rx: rx.map(BroadcastStream::new),
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
        loop {
            match Pin::new(&mut *rx).poll_next(cx) {
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
                Poll::Pending => return Poll::Pending,
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
