//! The embedded database: one SQLite file, `{storage.data_dir}/onair.sqlite3`, for everything
//! that must outlive the process (chat bans now; sign-in, questions, recordings next).
//!
//! **Who talks to it.** Components hold a [`Db`] (cheap to clone) and call
//! [`Db::call`] or [`Db::write`] with a closure that runs the typed functions of one table's
//! file (`db::bans`, `db::imports`, ...). Those files are the only place with SQL besides
//! [`migrations`]; nothing else in the crate writes a query. A new table is one entry appended
//! to [`migrations::MIGRATIONS`] plus one file of typed functions (see `docs/architecture.md`).
//!
//! **Threading.** One dedicated OS thread (`onair-db`) owns the only connection. Requests reach
//! it through a bounded channel ([`QUEUE`] deep: a burst of callers waits in `send().await`
//! rather than growing memory) and answers come back through a oneshot, so no query ever runs
//! on the async runtime and callers never block a runtime worker. One connection also means
//! one writer at a time in arrival order, which is what SQLite does anyway, and no
//! `SQLITE_BUSY` between our own requests. A closure runs to completion even if its caller
//! stops waiting (a client that hangs up mid-request): what a closure does to the database and
//! to memory together happens entirely or not at all.
//!
//! **Durability.** WAL journal with `synchronous = FULL`: a commit returns only after the WAL
//! is fsynced, so anything a caller was told is saved survives SIGKILL *and* a power cut.
//! (`NORMAL` would survive SIGKILL too, since a WAL commit is in the OS page cache before
//! `COMMIT` returns, but could lose the last commits on power loss: the old `bans_file` was
//! fsynced, and an admin's acknowledged ban must not come back lifted.) The cost is one fsync
//! per transaction on the database thread; tables written at a high rate (a chat log) should
//! batch rows into one transaction. Foreign keys are enforced; a busy timeout covers another
//! process (`sqlite3 .backup`) holding a lock.
//!
//! **Why rusqlite (bundled), not sqlx.** Our access pattern is one synchronous connection on
//! its own thread; rusqlite is exactly that, with SQLite compiled in (same version everywhere,
//! no system library, WAL and `integrity_check` built in). sqlx would bring its own async pool
//! and executor glue around the same C library (its SQLite driver also runs a worker thread
//! per connection), compile-time checked queries that need a database at build time or an
//! offline cache, and far more dependencies, for nothing we use.

pub mod bans;
pub mod identity;
pub mod imports;
pub mod migrations;
pub mod questions;
pub mod recording_pins;
pub mod recordings;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use crate::config::StorageConfig;

/// The database file's name inside `storage.data_dir`.
pub const FILE_NAME: &str = "onair.sqlite3";
/// Requests that may wait for the database thread before callers wait to send.
pub const QUEUE: usize = 256;
/// How long a statement waits for a lock held by another process before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be opened or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `storage.data_dir` cannot be created or written.
    #[error("storage.data_dir {path} cannot be used: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The file was migrated by a newer onair than this one.
    #[error(
        "the database {path} is at schema version {found}, newer than this onair knows \
         (up to {known}): run the newer onair, or restore a backup made for this version"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// A version this binary knows was applied under another name (a database made by a
    /// build from another branch).
    #[error(
        "the database {path} has migration {version} named {found:?}, but this onair's \
         migration {version} is {expected:?}: it was made by a different build"
    )]
    Diverged {
        path: PathBuf,
        version: i64,
        found: String,
        expected: &'static str,
    },
    #[error("database migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: rusqlite::Error,
    },
    /// A stored value that does not parse back (edited by hand, or a bug).
    #[error("bad row in {table}: {reason}")]
    BadRow { table: &'static str, reason: String },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The journal could not be switched to WAL (a file system without shared memory, such
    /// as some network mounts).
    #[error("the database {path} cannot use WAL mode (journal mode stays {mode:?})")]
    NoWal { path: PathBuf, mode: String },
    #[error("cannot start the database thread: {0}")]
    Thread(std::io::Error),
    /// No answer: the database thread has stopped, or this request panicked in it (the
    /// thread then carries on with the next request).
    #[error("the database request did not complete")]
    Closed,
}

/// What the database thread is asked to do.
enum Job {
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Close the connection and end the thread, then answer (see [`Db::close`]).
    Close(oneshot::Sender<()>),
}

/// A handle on the database thread; clones share it. The thread ends at [`Db::close`] or
/// when the last clone is dropped, closing the connection (which copies the WAL into the main
/// file and removes the `-wal` and `-shm` files).
#[derive(Clone)]
pub struct Db {
    jobs: mpsc::Sender<Job>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Creates `storage.data_dir` if missing, checks that it is writable, opens (or creates)
    /// `onair.sqlite3` there and applies pending migrations, all on the database thread.
    pub async fn open(cfg: &StorageConfig) -> Result<Db, DbError> {
        let dir = cfg.data_dir.clone();
        let path = dir.join(FILE_NAME);
        let p = path.clone();
        Self::start(path, move || {
            prepare_dir(&dir)?;
            open_file(&p)
        })
        .await
    }

    /// A private in-memory database with every migration applied: for unit tests.
    pub async fn open_in_memory() -> Result<Db, DbError> {
        let path = PathBuf::from(":memory:");
        let p = path.clone();
        Self::start(path, move || {
            let mut conn = Connection::open_in_memory().map_err(|source| DbError::Open {
                path: p.clone(),
                source,
            })?;
            configure(&conn, &p)?;
            migrations::migrate(&mut conn, &p)?;
            Ok(conn)
        })
        .await
    }

    async fn start(
        path: PathBuf,
        open: impl FnOnce() -> Result<Connection, DbError> + Send + 'static,
    ) -> Result<Db, DbError> {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        let (opened_tx, opened) = oneshot::channel();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("onair-db".into())
            .spawn(move || {
                let mut conn = match open() {
                    Ok(c) => {
                        let _ = opened_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let mut closed = None;
                while let Some(job) = rx.blocking_recv() {
                    match job {
                        // A panicking request must not take the database away from the
                        // others; an open transaction of the panicked closure rolls back when
                        // dropped.
                        Job::Run(job) => {
                            if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)))
                                .is_err()
                            {
                                error!(path = %shown, "a database request panicked; carrying on");
                            }
                        }
                        Job::Close(done) => {
                            closed = Some(done);
                            break;
                        }
                    }
                }
                // Requests sent after the close get `Closed`.
                rx.close();
                if let Err((_, e)) = conn.close() {
                    error!(path = %shown, error = %e, "closing the database");
                }
                if let Some(done) = closed {
                    let _ = done.send(());
                }
            })
            .map_err(DbError::Thread)?;
        opened.await.map_err(|_| DbError::Closed)??;
        info!(path = %path.display(), "database open");
        Ok(Db {
            jobs,
            path: Arc::new(path),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the database thread with the connection and returns its result. Use it
    /// for reads and for single statements; [`Db::write`] for anything that writes more.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::Run(Box::new(move |conn| {
            // The caller may have stopped waiting; the work is done all the same.
            let _ = tx.send(f(conn));
        }));
        self.jobs.send(job).await.map_err(|_| DbError::Closed)?;
        rx.await.map_err(|_| DbError::Closed)?
    }

    /// Finishes the requests already queued, closes the connection and waits for that; later
    /// requests (from any clone) fail with [`DbError::Closed`]. Called once the server has
    /// stopped everything that writes, so that a clean stop leaves one self-contained file.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Runs `f` in one `IMMEDIATE` transaction, committed (and fsynced) before the result
    /// comes back; an error from `f` rolls everything back. Answer a client only after this
    /// returns `Ok`: that is the promise that an acknowledged change survives a crash.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

/// Creates the directory and proves it writable (SQLite needs to create the `-wal` and
/// `-shm` files next to the database, so a writable file in a read-only directory fails
/// later and less clearly).
fn prepare_dir(dir: &Path) -> Result<(), DbError> {
    let fail = |source| DbError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".onair-write-test");
    std::fs::write(&probe, b"").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

fn open_file(path: &Path) -> Result<Connection, DbError> {
    let mut conn = Connection::open(path).map_err(|source| DbError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    configure(&conn, path)?;
    migrations::migrate(&mut conn, path)?;
    Ok(conn)
}

/// Connection settings; see the module documentation for why these.
fn configure(conn: &Connection, path: &Path) -> Result<(), DbError> {
    let open = |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    // Returns the mode in force: "memory" for in-memory databases, "wal" otherwise.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(open)?;
    if mode != "wal" && mode != "memory" {
        return Err(DbError::NoWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open)?;
    Ok(())
}

/// Now, as stored in `*_at` columns: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("onair-db-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn opens_in_wal_mode_with_full_sync_and_foreign_keys() {
        let dir = temp_dir("pragmas");
        let db = Db::open(&StorageConfig {
            data_dir: dir.join("nested/data"),
        })
        .await
        .expect("open creates the directory");
        assert_eq!(db.path(), dir.join("nested/data").join(FILE_NAME));
        let (mode, sync, fk) = db
            .call(|c| {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
                let fk: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
                Ok((mode, sync, fk))
            })
            .await
            .unwrap();
        assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unusable_data_dir_names_the_key_and_the_path() {
        let dir = temp_dir("unusable");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), b"").unwrap();
        let bad = dir.join("file/data");
        let e = Db::open(&StorageConfig {
            data_dir: bad.clone(),
        })
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, DbError::DataDir { .. }), "{e:?}");
        assert!(
            text.contains("storage.data_dir") && text.contains(&bad.display().to_string()),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_failed_write_rolls_back_and_a_panic_spares_the_thread() {
        let db = Db::open_in_memory().await.unwrap();
        let r: Result<(), DbError> = db
            .write(|tx| {
                imports::record(tx, "half", "x", 1)?;
                Err(DbError::BadRow {
                    table: "imports",
                    reason: "on purpose".into(),
                })
            })
            .await;
        assert!(r.is_err());
        assert!(!db.call(|c| imports::done(c, "half")).await.unwrap());
        let r: Result<(), DbError> = db.call(|_| panic!("on purpose")).await;
        assert!(matches!(r, Err(DbError::Closed)), "{r:?}");
        assert!(!db.call(|c| imports::done(c, "half")).await.unwrap());
    }

    #[tokio::test]
    async fn close_folds_the_wal_in_and_refuses_later_requests() {
        let dir = temp_dir("close");
        let db = Db::open(&StorageConfig {
            data_dir: dir.clone(),
        })
        .await
        .unwrap();
        db.write(|tx| imports::record(tx, "x", "y", 1))
            .await
            .unwrap();
        let wal = dir.join(format!("{FILE_NAME}-wal"));
        assert!(wal.exists(), "WAL in use");
        let other = db.clone();
        db.close().await;
        assert!(!wal.exists(), "WAL folded into the main file");
        let r = other.call(|c| imports::done(c, "x")).await;
        assert!(matches!(r, Err(DbError::Closed)), "{r:?}");
        let reopened = Db::open(&StorageConfig {
            data_dir: dir.clone(),
        })
        .await
        .unwrap();
        assert!(reopened.call(|c| imports::done(c, "x")).await.unwrap());
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
