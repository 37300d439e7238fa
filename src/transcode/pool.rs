//! The worker pool: a fixed set of OS threads running jobs, never the async runtime's threads.
//!
//! Each job is a [`Job`]: a mailbox of messages plus the state that handles them (a decoder,
//! an encoder), run by at most one worker at a time so its messages stay in order, while
//! different jobs (renditions, streams) run in parallel on different workers. A job with mail
//! is queued once; a worker runs a small batch, then puts it at the back of the queue if more
//! mail waits, so one busy stream cannot starve the others. Sending never blocks: the queue
//! depth shows up as lag ([`Job::lag`]), which admission control watches.
//!
//! Hand-written rather than rayon or a channel per job: rayon's work stealing has no notion of
//! per-job ordering, and a thread per job would not bound CPU to the pool size.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::warn;

/// Messages a job handles before it goes back to the end of the queue.
const BATCH: usize = 8;

/// What a job does with its messages (runs on a pool thread).
pub trait Handler: Send + 'static {
    type Msg: Send + 'static;
    fn handle(&mut self, msg: Self::Msg);
}

/// Something the workers can run.
trait Runnable: Send + Sync {
    fn run_batch(self: Arc<Self>);
}

struct Queue {
    ready: VecDeque<Arc<dyn Runnable>>,
    stopping: bool,
}

struct PoolInner {
    /// Std mutex + condvar: workers are plain threads; held only to push or pop.
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Nanoseconds workers spent running jobs (for utilisation).
    busy_ns: AtomicU64,
    size: usize,
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn schedule(&self, job: Arc<dyn Runnable>) {
        let mut q = self.lock();
        if q.stopping {
            return;
        }
        q.ready.push_back(job);
        drop(q);
        self.wake.notify_one();
    }
}

/// The pool. Dropping it (or [`Pool::shutdown`]) stops the workers after their current batch.
pub struct Pool {
    inner: Arc<PoolInner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `size` workers (at least one).
    pub fn new(size: usize) -> std::io::Result<Arc<Pool>> {
        let size = size.max(1);
        let inner = Arc::new(PoolInner {
            queue: Mutex::new(Queue {
                ready: VecDeque::new(),
                stopping: false,
            }),
            wake: Condvar::new(),
            busy_ns: AtomicU64::new(0),
            size,
        });
        let mut threads = Vec::with_capacity(size);
        for i in 0..size {
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("onair-transcode-{i}"))
                    .spawn(move || worker(inner))?,
            );
        }
        Ok(Arc::new(Pool {
            inner,
            threads: Mutex::new(threads),
        }))
    }

    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Total time workers have spent running jobs since the start.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.inner.busy_ns.load(Ordering::Relaxed))
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.inner.lock().ready.len()
    }

    /// A new job with `handler` as its state. It logs inside the caller's current span (the
    /// channel task's, so pool threads' lines carry the channel).
    pub fn job<H: Handler>(&self, handler: H) -> Arc<Job<H>> {
        Arc::new(Job {
            span: tracing::Span::current(),
            mailbox: Mutex::new(Mailbox {
                queue: VecDeque::new(),
                scheduled: false,
            }),
            handler: Mutex::new(handler),
            pool: self.inner.clone(),
            closed: AtomicBool::new(false),
        })
    }

    /// Stops the workers and waits for them.
    pub fn shutdown(&self) {
        {
            let mut q = self.inner.lock();
            q.stopping = true;
            q.ready.clear();
        }
        self.inner.wake.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            if t.join().is_err() {
                warn!("a transcode worker panicked");
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker(inner: Arc<PoolInner>) {
    loop {
        let job = {
            let mut q = inner.lock();
            loop {
                if q.stopping {
                    return;
                }
                if let Some(j) = q.ready.pop_front() {
                    break j;
                }
                q = inner.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let t = Instant::now();
        // A panicking job (a bug in a codec wrapper) must not take the worker down with it;
        // the job's mutexes recover from poisoning.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run_batch())).is_err() {
            warn!("a transcode job panicked; it is dropped");
        }
        inner
            .busy_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

struct Mailbox<M> {
    /// Messages with the time their input arrived from the bus.
    queue: VecDeque<(Instant, M)>,
    /// In the pool's ready queue or running: at most one worker has it.
    scheduled: bool,
}

/// A job: an ordered mailbox and the handler state.
pub struct Job<H: Handler> {
    /// Std mutex, held only to push or pop a message.
    mailbox: Mutex<Mailbox<H::Msg>>,
    /// Held by the one worker running the job, for one batch.
    handler: Mutex<H>,
    pool: Arc<PoolInner>,
    /// Closed jobs drop new mail (their stream ended or they were replaced).
    closed: AtomicBool,
    span: tracing::Span,
}

impl<H: Handler> Job<H> {
    fn mailbox(&self) -> MutexGuard<'_, Mailbox<H::Msg>> {
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message whose input arrived at `arrived`. Never blocks.
    pub fn send(self: &Arc<Self>, msg: H::Msg, arrived: Instant) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut mb = self.mailbox();
        mb.queue.push_back((arrived, msg));
        if !mb.scheduled {
            mb.scheduled = true;
            drop(mb);
            self.pool.schedule(self.clone());
        }
    }

    /// How long the oldest waiting message has waited since its input arrived.
    pub fn lag(&self) -> Duration {
        self.mailbox()
            .queue
            .front()
            .map(|(t, _)| t.elapsed())
            .unwrap_or_default()
    }

    /// Messages waiting.
    pub fn pending(&self) -> usize {
        self.mailbox().queue.len()
    }

    /// Drops waiting messages that `keep` refuses (shedding a backlog).
    pub fn discard(&self, keep: impl Fn(&H::Msg) -> bool) -> usize {
        let mut mb = self.mailbox();
        let before = mb.queue.len();
        mb.queue.retain(|(_, m)| keep(m));
        before - mb.queue.len()
    }

    /// No more mail accepted after this.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Runs `f` on the handler state (from outside the pool, e.g. to read counters).
    pub fn with_handler<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.handler.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl<H: Handler> Runnable for Job<H> {
    fn run_batch(self: Arc<Self>) {
        {
            let _span = self.span.enter();
            let mut h = self.handler.lock().unwrap_or_else(|e| e.into_inner());
            for _ in 0..BATCH {
                let next = {
                    let mut mb = self.mailbox();
                    match mb.queue.pop_front() {
                        Some((_, m)) => m,
                        None => {
                            mb.scheduled = false;
                            return;
                        }
                    }
                };
                h.handle(next);
            }
        }
        let mut mb = self.mailbox();
        if mb.queue.is_empty() {
            mb.scheduled = false;
        } else {
            drop(mb);
            self.pool.schedule(self.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    struct Recorder {
        seen: Vec<u32>,
        done: mpsc::Sender<Vec<u32>>,
    }

    impl Handler for Recorder {
        type Msg = Option<u32>;
        fn handle(&mut self, msg: Option<u32>) {
            match msg {
                Some(n) => self.seen.push(n),
                None => {
                    let _ = self.done.send(std::mem::take(&mut self.seen));
                }
            }
        }
    }

    #[test]
    fn jobs_keep_their_order_and_run_in_parallel() {
        let pool = Pool::new(2).expect("pool");
        let (tx, rx) = mpsc::channel();
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                pool.job(Recorder {
                    seen: Vec::new(),
                    done: tx.clone(),
                })
            })
            .collect();
        let now = Instant::now();
        for n in 0..500 {
            for j in &jobs {
                j.send(Some(n), now);
            }
        }
        for j in &jobs {
            j.send(None, now);
        }
        for _ in 0..4 {
            let seen = rx.recv_timeout(Duration::from_secs(10)).expect("job done");
            assert_eq!(seen, (0..500).collect::<Vec<_>>());
        }
        for j in &jobs {
            assert_eq!(j.pending(), 0);
            assert_eq!(j.lag(), Duration::ZERO);
        }
        pool.shutdown();
    }

    #[test]
    fn closed_jobs_drop_mail_and_discard_sheds_backlog() {
        let pool = Pool::new(1).expect("pool");
        let (tx, rx) = mpsc::channel();
        let job = pool.job(Recorder {
            seen: Vec::new(),
            done: tx,
        });
        // Hold the handler so that mail piles up.
        let old = Instant::now() - Duration::from_secs(5);
        job.with_handler(|_| {
            for n in 0..10 {
                job.send(Some(n), old);
            }
            assert!(job.lag() >= Duration::from_secs(5));
            assert_eq!(job.discard(|m| m.is_some_and(|n| n >= 7)), 7);
        });
        job.send(None, Instant::now());
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).expect("done"),
            vec![7, 8, 9]
        );
        job.close();
        job.send(Some(1), Instant::now());
        assert_eq!(job.pending(), 0);
    }
}
