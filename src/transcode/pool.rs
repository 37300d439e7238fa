//! The worker pool: a fixed set of OS threads running jobs, never the async runtime's threads.
//!
//! Each job is a [`Job`]: a mailbox of messages plus the state that handles them (a decoder,
//! an encoder), run by at most one worker at a time so its messages stay in order, while
//! different jobs (renditions, streams) run in parallel on different workers. A job with mail
//! is queued once; a worker runs a small batch, then puts it at the back of the queue if more
//! mail waits, so one busy stream cannot starve the others. Sending never blocks: the queue
//! depth shows up as lag ([`Job::lag`]), which admission control watches.
//!
//! Light, time-critical jobs ([`Pool::light_job`]: audio, a fraction of a millisecond per
//! frame) always go to the front of the queue, and a worker running another job's batch
//! stops after the current message when one is waiting. Without that, a browser's audio
//! waited behind a busy ladder's video batches (eight `veryslow` frames per rendition per
//! turn) for seconds and was dropped.
//!
//! Hand-written rather than rayon or a channel per job: rayon's work stealing has no notion of
//! per-job ordering, and a thread per job would not bound CPU to the pool size.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    fn is_light(&self) -> bool;
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
    /// Light jobs in `ready`: other jobs cut their batch short while any wait.
    light_waiting: AtomicUsize,
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
        if job.is_light() {
            self.light_waiting.fetch_add(1, Ordering::AcqRel);
            q.ready.push_front(job);
        } else {
            q.ready.push_back(job);
        }
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
            light_waiting: AtomicUsize::new(0),
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
        self.make_job(handler, false)
    }

    /// A job whose messages are cheap and late output hurts (audio): queued ahead of the
    /// others when new mail arrives for it.
    pub fn light_job<H: Handler>(&self, handler: H) -> Arc<Job<H>> {
        self.make_job(handler, true)
    }

    fn make_job<H: Handler>(&self, handler: H, light: bool) -> Arc<Job<H>> {
        Arc::new(Job {
            light,
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
            self.inner.light_waiting.store(0, Ordering::Release);
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
                    if j.is_light() {
                        inner.light_waiting.fetch_sub(1, Ordering::AcqRel);
                    }
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
    /// Queued at the front, and others yield to it ([`Pool::light_job`]).
    light: bool,
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
            for i in 0..BATCH {
                // A light job waits: let it run before this job's next message.
                if i > 0 && !self.light && self.pool.light_waiting.load(Ordering::Acquire) > 0 {
                    break;
                }
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

    fn is_light(&self) -> bool {
        self.light
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
    fn light_jobs_go_ahead_of_a_backlog() {
        let pool = Pool::new(1).expect("pool");
        let (tx, rx) = mpsc::channel();
        let order = Arc::new(Mutex::new(Vec::new()));
        struct Tag(
            &'static str,
            Arc<Mutex<Vec<&'static str>>>,
            mpsc::Sender<()>,
        );
        impl Handler for Tag {
            type Msg = ();
            fn handle(&mut self, _: ()) {
                self.1.lock().unwrap().push(self.0);
                let _ = self.2.send(());
            }
        }
        let heavy: Vec<_> = (0..3)
            .map(|_| pool.job(Tag("heavy", order.clone(), tx.clone())))
            .collect();
        let light = pool.light_job(Tag("light", order.clone(), tx.clone()));
        // Block the only worker on the first heavy job while the others queue up.
        let now = Instant::now();
        heavy[0].with_handler(|_| {
            for h in &heavy {
                h.send((), now);
            }
            light.send((), now);
        });
        for _ in 0..4 {
            rx.recv_timeout(Duration::from_secs(10)).expect("ran");
        }
        let order = order.lock().unwrap().clone();
        // The first heavy job may already be running; the light one comes before the rest.
        let light_at = order.iter().position(|t| *t == "light").expect("light ran");
        assert!(light_at <= 1, "{order:?}");
        pool.shutdown();
    }

    #[test]
    fn a_long_batch_yields_to_a_light_job() {
        struct Slow(mpsc::Sender<&'static str>, &'static str, Duration);
        impl Handler for Slow {
            type Msg = ();
            fn handle(&mut self, _: ()) {
                std::thread::sleep(self.2);
                let _ = self.0.send(self.1);
            }
        }
        let pool = Pool::new(1).expect("pool");
        let (tx, rx) = mpsc::channel();
        let heavy = pool.job(Slow(tx.clone(), "heavy", Duration::from_millis(30)));
        let light = pool.light_job(Slow(tx, "light", Duration::ZERO));
        let now = Instant::now();
        for _ in 0..BATCH {
            heavy.send((), now);
        }
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).expect("ran"),
            "heavy"
        );
        light.send((), Instant::now());
        let mut order = Vec::new();
        for _ in 0..BATCH {
            order.push(rx.recv_timeout(Duration::from_secs(10)).expect("ran"));
        }
        // At most the message that was running when the light job came, then the light job.
        let light_at = order.iter().position(|t| *t == "light").expect("light ran");
        assert!(light_at <= 1, "{order:?}");
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
