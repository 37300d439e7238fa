//! Graceful shutdown of HTTP connections, without a lock on every wake-up of every connection.
//!
//! [`serve`](super::serve) wraps each connection with [`Shutdown::watch`] and, when it stops,
//! calls [`Shutdown::stop`]: every connection then finishes the request in flight (hyper's
//! `graceful_shutdown`) and closes; idle ones close at once. Event streams end on their own
//! (the chat sends the end of the stream through each channel's ring at shutdown).
//!
//! hyper-util's `GracefulShutdown` does the same, but its watcher polls a `watch::changed()`
//! future on every poll of the connection, and that takes the one mutex of the channel's
//! waiter list each time: with 10,000 chat subscribers, one global lock per delivered chat
//! message per subscriber, contended by every worker thread. Here a connection registers its
//! task's waker once (again only if the task's waker changes) and otherwise reads an atomic.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

/// The stop signal shared by every connection of one listener.
#[derive(Clone, Default)]
pub(super) struct Shutdown(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Set once, before `notify` wakes the registered connections.
    stopping: AtomicBool,
    /// In its own `Arc` for [`Notify::notified_owned`].
    notify: Arc<Notify>,
}

impl Shutdown {
    /// Asks every watched connection, now and to come, to finish gracefully.
    pub(super) fn stop(&self) {
        self.0.stopping.store(true, Ordering::Release);
        self.0.notify.notify_waiters();
    }

    /// `conn`, asked to shut down gracefully once [`Shutdown::stop`] is called.
    pub(super) fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        // Created before the first look at the flag: a `stop` in between still counts (a
        // `Notified` sees every `notify_waiters` made after it was created).
        let notified = Box::pin(self.0.notify.clone().notified_owned());
        Watched {
            conn: Box::pin(conn),
            notified,
            inner: self.0.clone(),
            registered: None,
            stopping: false,
        }
    }
}

/// A connection under [`Shutdown::watch`]. A struct rather than an `async` block, whose state
/// may keep room for both the captured connection and its pinned copy for as long as the
/// connection lives (hours, for an event stream).
pub(super) struct Watched<C> {
    conn: Pin<Box<C>>,
    notified: Pin<Box<OwnedNotified>>,
    inner: Arc<Inner>,
    /// The task waker the notification holds; `None` until the first poll.
    registered: Option<Waker>,
    /// `graceful_shutdown` was called.
    stopping: bool,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        if !this.stopping {
            // Poll (and lock) the notification only to register this task's waker: the first
            // time, and if the task's waker ever changes.
            let mut stop = false;
            if this
                .registered
                .as_ref()
                .is_none_or(|w| !w.will_wake(cx.waker()))
            {
                if this.notified.as_mut().poll(cx).is_ready() {
                    stop = true;
                } else {
                    this.registered = Some(cx.waker().clone());
                }
            }
            if stop || this.inner.stopping.load(Ordering::Acquire) {
                this.stopping = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}
