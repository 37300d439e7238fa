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

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;

use hyper_util::server::graceful::GracefulConnection;
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
    pub(super) fn watch<C>(&self, conn: C) -> impl Future<Output = C::Output> + Send
    where
        C: GracefulConnection + Send,
    {
        let inner = self.0.clone();
        async move {
            // Created before the first look at the flag: a `stop` in between still counts
            // (a `Notified` sees every `notify_waiters` made after it was created).
            let mut notified = pin!(inner.notify.clone().notified_owned());
            let mut conn = pin!(conn);
            let mut registered: Option<Waker> = None;
            let mut stopping = false;
            poll_fn(|cx| {
                if !stopping {
                    // Poll (and lock) the notification only to register this task's waker:
                    // the first time, and if the task's waker ever changes.
                    if registered.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                        if notified.as_mut().poll(cx).is_ready() {
                            stopping = true;
                        } else {
                            registered = Some(cx.waker().clone());
                        }
                    }
                    stopping = stopping || inner.stopping.load(Ordering::Acquire);
                    if stopping {
                        conn.as_mut().graceful_shutdown();
                    }
                }
                conn.as_mut().poll(cx)
            })
            .await
        }
    }
}
