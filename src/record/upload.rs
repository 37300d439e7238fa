//! Uploading recordings to the object store ([`super::store`]), in the background.
//!
//! **Who talks to it.** A recording's disk task ([`super::disk`]) calls [`Uploader::enqueue`]
//! after each file is fsynced and listed (a segment with its `segments.log`, an init segment,
//! `meta.json`) and [`Uploader::finish`] when a recording session closes; retention and the
//! admin DELETE call [`Uploader::delete`]. `enqueue` is a `try_send` on a bounded queue: the
//! recorder and the live path never wait for the store.
//!
//! **Outages.** Each job retries with a growing backoff (up to [`MAX_BACKOFF`]) until it
//! succeeds or the server stops. The first failure after a success logs one warning (not one
//! per segment) and sets `onair_record_object_store_up` to 0; jobs that find the queue full
//! are not kept in memory, only counted, since their files are on disk anyway. The first
//! success after an outage logs once, and a catch-up [`sweep`](Uploader::sweep_all) compares
//! every local recording not yet marked uploaded with the store's listing and uploads what is
//! missing, so memory stays bounded however long the store is away, and nothing is lost.
//! The same sweep runs at start (a restart after a crash or an outage).
//!
//! **Finished recordings.** [`Uploader::finish`] waits out `announce.grace_seconds` (a
//! broadcaster may come back and continue the recording), then syncs the recording, writes the
//! `uploaded` marker (in the store and on disk) and, with `record.object_store_keep_local =
//! false`, removes the local media files (the index files stay, so the index survives a
//! restart; VOD then reads from the store).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::store::{RecordStore, StoreError, UPLOADED};
use super::Recorder;

/// Upload jobs waiting before new ones are left to the catch-up sweep.
const QUEUE: usize = 512;
/// Longest wait between two tries of one upload.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How often a sweep runs while uploads were left out (the queue was full).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What to upload.
#[derive(Debug)]
enum Job {
    /// Files of a recording, in this order (`rel` as on disk).
    Files {
        channel: String,
        id: String,
        rels: Vec<String>,
    },
    /// A recording session closed: sync it, mark it, maybe prune it.
    Finish { channel: String, id: String },
}

#[derive(Default)]
struct State {
    /// The last request failed and no request succeeded since.
    down: bool,
    /// Jobs were dropped from a full queue: a sweep is owed.
    missed: bool,
    /// Recordings deleted locally whose objects could not be deleted yet (kept in memory: a
    /// restart forgets them, see docs/scaling.md).
    deletes: Vec<(String, String)>,
}

/// The uploader: shared by the disk tasks, retention and HTTP.
pub struct Uploader {
    pub store: RecordStore,
    root: PathBuf,
    keep_local: bool,
    grace: Duration,
    tx: mpsc::Sender<Job>,
    /// Std mutex: two flags, set and read in short sections, never across an await.
    state: Mutex<State>,
    /// Wakes the sweeper (the store is back, or uploads were missed).
    wake: Notify,
    cancel: CancellationToken,
    /// To ask the recorder whether a recording is live (weak: the recorder owns us).
    recorder: Mutex<Weak<Recorder>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoned only if a holder panicked while flipping flags.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a file of a recording directory is uploaded (`rel` relative to it).
fn wanted(rel: &str) -> bool {
    let mut parts = rel.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(f), None, None) => f == super::disk::META || f == "poster.jpg",
        (Some(r), Some(f), None) => {
            crate::config::is_name(r) && (f == super::disk::LOG || super::is_file_name(f))
        }
        _ => false,
    }
}

/// Whether a file is media (removed locally once uploaded, when not keeping local copies).
fn is_media(rel: &str) -> bool {
    rel.ends_with(".m4s") || rel.ends_with(".mp4")
}

/// The uploadable files of a recording directory with their sizes (blocking).
fn local_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(top) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in top.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let Ok(sub) = std::fs::read_dir(e.path()) else {
                continue;
            };
            for f in sub.flatten() {
                let rel = format!("{name}/{}", f.file_name().to_string_lossy());
                if let (true, Ok(m)) = (wanted(&rel), f.metadata()) {
                    out.push((rel, m.len()));
                }
            }
        } else if let (true, Ok(m)) = (wanted(&name), e.metadata()) {
            out.push((name, m.len()));
        }
    }
    // Media before the index files that list them, init segments before segments.
    out.sort_by_key(|(rel, _)| (!is_media(rel), !rel.ends_with(".mp4"), rel.clone()));
    out
}

impl Uploader {
    /// Starts the dispatcher (`record.object_store_concurrency` uploads at once) and the
    /// sweeper, which first catches up with whatever is on disk and not yet uploaded.
    pub fn start(
        store: RecordStore,
        root: PathBuf,
        cfg: &crate::config::RecordConfig,
        grace: Duration,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Uploader> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let up = Arc::new(Uploader {
            store,
            root,
            keep_local: cfg.object_store_keep_local,
            grace,
            tx,
            state: Mutex::new(State {
                missed: true,
                ..Default::default()
            }),
            wake: Notify::new(),
            cancel,
            recorder: Mutex::new(Weak::new()),
        });
        metrics::gauge!("onair_record_object_store_up").set(1.0);
        info!(store = %up.store.url, keep_local = up.keep_local, "recordings are uploaded to the object store");
        tracker.spawn(
            up.clone()
                .dispatch(rx, cfg.object_store_concurrency, tracker.clone()),
        );
        tracker.spawn(up.clone().sweeper());
        up
    }

    pub(crate) fn set_recorder(&self, rec: &Arc<Recorder>) {
        *lock(&self.recorder) = Arc::downgrade(rec);
    }

    fn is_recording(&self, channel: &str, id: &str) -> bool {
        lock(&self.recorder)
            .upgrade()
            .is_some_and(|r| r.is_recording(channel, id))
    }

    /// Whether the store answered the last request.
    pub fn is_up(&self) -> bool {
        !lock(&self.state).down
    }

    /// Files of a recording to upload, in order. Never waits: a full queue leaves them to the
    /// catch-up sweep.
    pub fn enqueue(&self, channel: &str, id: &str, rels: Vec<String>) {
        let job = Job::Files {
            channel: channel.to_string(),
            id: id.to_string(),
            rels,
        };
        if self.tx.try_send(job).is_err() {
            metrics::counter!("onair_record_upload_deferred_total").increment(1);
            let first = !std::mem::replace(&mut lock(&self.state).missed, true);
            if first {
                warn!(store = %self.store.url, "object store uploads are behind: the queue is full; the files stay on disk and are caught up later");
            }
        }
    }

    /// A recording session closed: after the grace period, if it is not being recorded again,
    /// sync it, mark it uploaded and (without `keep_local`) prune its local media.
    pub fn finish(self: &Arc<Self>, channel: &str, id: &str) {
        let (up, channel, id) = (self.clone(), channel.to_string(), id.to_string());
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(up.grace) => {}
                _ = up.cancel.cancelled() => return,
            }
            if up.is_recording(&channel, &id) {
                return;
            }
            if up.tx.send(Job::Finish { channel, id }).await.is_err() {
                debug!("uploader stopped before a recording's finish");
            }
        });
    }

    /// Dispatches jobs, at most `concurrency` at once.
    async fn dispatch(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Job>,
        concurrency: usize,
        tracker: TaskTracker,
    ) {
        let slots = Arc::new(Semaphore::new(concurrency));
        loop {
            let job = tokio::select! {
                j = rx.recv() => j,
                _ = self.cancel.cancelled() => None,
            };
            let Some(job) = job else { return };
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let up = self.clone();
            tracker.spawn(async move {
                match job {
                    Job::Files { channel, id, rels } => {
                        for rel in rels {
                            if !up.upload(&channel, &id, &rel).await {
                                break;
                            }
                        }
                    }
                    Job::Finish { channel, id } => up.finish_now(&channel, &id).await,
                }
                drop(permit);
            });
        }
    }

    /// Uploads one local file, retrying until it is stored; false when the server stops or
    /// the file is gone (deleted, pruned: nothing to do).
    async fn upload(&self, channel: &str, id: &str, rel: &str) -> bool {
        let path = self.root.join(channel).join(id).join(rel);
        let data = match tokio::fs::read(&path).await {
            Ok(d) => Bytes::from(d),
            Err(e) => {
                debug!(%channel, recording = %id, file = %rel, error = %e, "not uploaded: the local file is gone");
                return false;
            }
        };
        let key = self.store.key(channel, id, rel);
        let len = data.len() as u64;
        self.retrying(|| {
            let (store, key, data) = (self.store.store.clone(), key.clone(), data.clone());
            async move { store.put(&key, data.into()).await.map(|_| ()) }
        })
        .await
        .inspect(|_| {
            metrics::counter!("onair_record_uploaded_total").increment(1);
            metrics::counter!("onair_record_uploaded_bytes_total").increment(len);
        })
        .is_some()
    }

    /// Runs a request until it succeeds (`Some`) or the server stops (`None`), keeping the
    /// up/down state and its log lines.
    async fn retrying<F, Fut, T>(&self, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            // A request in flight does not hold up shutdown.
            let r = tokio::select! {
                r = f() => r,
                _ = self.cancel.cancelled() => return None,
            };
            match r {
                Ok(v) => {
                    self.mark_up();
                    return Some(v);
                }
                Err(e) => {
                    self.mark_down(&StoreError::from(e));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.cancel.cancelled() => return None,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn mark_up(&self) {
        let was_down = std::mem::replace(&mut lock(&self.state).down, false);
        if was_down {
            metrics::gauge!("onair_record_object_store_up").set(1.0);
            info!(store = %self.store.url, "object store reachable again: uploading what was missed");
            lock(&self.state).missed = true;
            self.wake.notify_one();
        }
    }

    fn mark_down(&self, e: &StoreError) {
        metrics::counter!("onair_record_upload_errors_total").increment(1);
        let was_down = std::mem::replace(&mut lock(&self.state).down, true);
        if !was_down {
            metrics::gauge!("onair_record_object_store_up").set(0.0);
            warn!(store = %self.store.url, error = %e, "object store unavailable: recordings go on on local disk and are uploaded when it is back");
        }
    }

    /// The store's objects of a recording, by `rel`, with their sizes.
    async fn remote_files(&self, channel: &str, id: &str) -> Option<HashMap<String, u64>> {
        let dir = self.store.dir_key(channel, id);
        self.retrying(|| {
            let (store, dir) = (self.store.store.clone(), dir.clone());
            async move {
                let mut out = Vec::new();
                let mut list = store.list(Some(&dir));
                while let Some(m) = list.next().await {
                    out.push(m?);
                }
                Ok(out)
            }
        })
        .await
        .map(|metas| {
            metas
                .into_iter()
                .filter_map(|m| Some((self.store.rel_of(&dir, &m.location)?, m.size)))
                .collect()
        })
    }

    /// Uploads what of a local recording the store lacks (or holds at another size). `None`
    /// when stopped, else whether every file was there or is now.
    async fn sync(&self, channel: &str, id: &str) -> Option<bool> {
        let dir = self.root.join(channel).join(id);
        let local = tokio::task::spawn_blocking(move || local_files(&dir))
            .await
            .unwrap_or_default();
        if local.is_empty() {
            return Some(false);
        }
        let remote = self.remote_files(channel, id).await?;
        let mut all = true;
        for (rel, size) in local {
            if remote.get(&rel) == Some(&size) {
                continue;
            }
            if !self.upload(channel, id, &rel).await {
                if self.cancel.is_cancelled() {
                    return None;
                }
                all = false;
            }
        }
        Some(all)
    }

    async fn finish_now(&self, channel: &str, id: &str) {
        if self.is_recording(channel, id) || self.sync(channel, id).await != Some(true) {
            return;
        }
        let key = self.store.key(channel, id, UPLOADED);
        let done = self
            .retrying(|| {
                let (store, key) = (self.store.store.clone(), key.clone());
                async move { store.put(&key, Bytes::from_static(b"1\n").into()).await }
            })
            .await;
        if done.is_none() || self.is_recording(channel, id) {
            return;
        }
        let dir = self.root.join(channel).join(id);
        let keep = self.keep_local;
        let pruned = tokio::task::spawn_blocking(move || {
            super::disk::write_synced(&dir.join(UPLOADED), b"1\n").ok()?;
            if keep {
                return Some(0);
            }
            let mut n = 0;
            for (rel, _) in local_files(&dir) {
                if is_media(&rel) && std::fs::remove_file(dir.join(&rel)).is_ok() {
                    n += 1;
                }
            }
            Some(n)
        })
        .await
        .ok()
        .flatten();
        match pruned {
            Some(0) => info!(%channel, recording = %id, "recording uploaded to the object store"),
            Some(n) => {
                info!(%channel, recording = %id, removed = n, "recording uploaded to the object store; local media files removed (record.object_store_keep_local = false)")
            }
            None => {
                warn!(%channel, recording = %id, "recording uploaded, but its local marker could not be written")
            }
        }
    }

    /// Every local recording not yet marked uploaded, synced (at start, and after an outage
    /// or a full queue). Finished ones are finished (marked, maybe pruned).
    async fn sweep_all(&self) {
        let root = self.root.clone();
        let dirs = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for c in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let channel = c.file_name().to_string_lossy().to_string();
                if !crate::config::is_name(&channel) {
                    continue;
                }
                for r in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
                    let id = r.file_name().to_string_lossy().to_string();
                    if super::is_id(&id) && !r.path().join(UPLOADED).exists() {
                        out.push((channel.clone(), id));
                    }
                }
            }
            out
        })
        .await
        .unwrap_or_default();
        if !dirs.is_empty() {
            info!(
                recordings = dirs.len(),
                "object store: checking recordings not yet wholly uploaded"
            );
        }
        for (channel, id) in dirs {
            if self.cancel.is_cancelled() {
                return;
            }
            if self.is_recording(&channel, &id) {
                if self.sync(&channel, &id).await.is_none() {
                    return;
                }
            } else {
                self.finish_now(&channel, &id).await;
            }
        }
    }

    async fn sweeper(self: Arc<Self>) {
        loop {
            let (owed, deletes) = {
                let mut st = lock(&self.state);
                (
                    std::mem::take(&mut st.missed),
                    std::mem::take(&mut st.deletes),
                )
            };
            for (channel, id) in deletes {
                self.delete(&channel, &id).await;
            }
            if owed {
                self.sweep_all().await;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                _ = self.cancel.cancelled() => return,
            }
        }
    }

    /// Deletes a recording's objects (retention, admin DELETE; the local files are gone
    /// already). One try with a deadline, since an admin may be waiting; when the store is
    /// away it is tried again by the sweeper once the store is back.
    pub async fn delete(&self, channel: &str, id: &str) {
        match self.delete_objects(channel, id).await {
            Ok(n) => {
                info!(%channel, recording = %id, objects = n, "recording deleted from the object store")
            }
            Err(e) => {
                warn!(%channel, recording = %id, error = %e, "recording's objects not deleted yet: tried again when the object store answers");
                let mut st = lock(&self.state);
                st.deletes.push((channel.to_string(), id.to_string()));
                st.missed = true;
            }
        }
    }

    async fn delete_objects(&self, channel: &str, id: &str) -> Result<usize, StoreError> {
        let dir = self.store.dir_key(channel, id);
        let store = self.store.store.clone();
        let work = async move {
            let keys: Vec<object_store::Result<object_store::path::Path>> = store
                .list(Some(&dir))
                .map(|m| m.map(|m| m.location))
                .collect()
                .await;
            let keys: Vec<_> = keys.into_iter().collect::<Result<_, _>>()?;
            let n = keys.len();
            let mut results =
                store.delete_stream(futures_util::stream::iter(keys.into_iter().map(Ok)).boxed());
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(StoreError::from(e)),
                }
            }
            Ok(n)
        };
        match tokio::time::timeout(Duration::from_secs(20), work).await {
            Ok(Ok(n)) => {
                self.mark_up();
                Ok(n)
            }
            Ok(Err(e)) => {
                self.mark_down(&e);
                Err(e)
            }
            Err(_) => Err(StoreError::Request(object_store::Error::Generic {
                store: "S3",
                source: "deleting the recording's objects timed out".into(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_uploaded() {
        for ok in [
            "meta.json",
            "poster.jpg",
            "source/000001.m4s",
            "source/init-1.mp4",
            "source/segments.log",
        ] {
            assert!(wanted(ok), "{ok}");
        }
        for no in [
            "meta.json.tmp",
            "uploaded",
            "source/x.tmp",
            "a/b/c",
            "../x/000001.m4s",
        ] {
            assert!(!wanted(no), "{no}");
        }
        assert!(is_media("source/init-1.mp4") && !is_media("source/segments.log"));
    }

    #[test]
    fn local_files_put_media_first() {
        let d = std::env::temp_dir().join(format!("onair-upload-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("source")).unwrap();
        for (f, n) in [
            ("meta.json", 2),
            ("source/segments.log", 3),
            ("source/000001.m4s", 4),
            ("source/init-1.mp4", 5),
            ("source/junk", 1),
        ] {
            std::fs::write(d.join(f), vec![0u8; n]).unwrap();
        }
        let got: Vec<String> = local_files(&d).into_iter().map(|x| x.0).collect();
        assert_eq!(
            got,
            [
                "source/init-1.mp4",
                "source/000001.m4s",
                "meta.json",
                "source/segments.log"
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
