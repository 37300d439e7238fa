//! The database schema, as an ordered list of migrations applied at start by [`migrate`]
//! (called by `Db::open` on the database thread).
//!
//! # Adding a table or a column
//! Append one [`Migration`] at the end of [`MIGRATIONS`] with the next `version` (the last
//! one plus 1) and a short snake_case `name`, then write the typed functions that use it in
//! its own file (`db/<table>.rs`). Never edit or reorder a migration that has been merged:
//! databases in the field already ran it, and a database whose recorded name for a version
//! differs from this list is refused at start (a build from another branch made it). Two
//! branches that both append version N conflict in this file, on purpose: renumber one.
//!
//! Each migration runs in its own `IMMEDIATE` transaction together with its row in
//! `schema_migrations` (version, name, applied_at), so it is applied entirely or not at all;
//! a crash between two migrations resumes with the next one. A database at a version newer
//! than the last one here is refused with a message saying so, rather than half understood.
//!
//! SQL conventions: `STRICT` tables; times as RFC 3339 UTC text (`db::now()`) in `*_at`
//! columns; channel names as text (channels live in the config, not here); foreign keys are
//! on, so reference rows of our own tables with `REFERENCES ... ON DELETE CASCADE`. Secrets
//! (session tokens, provider tokens) never go in clear text: store a hash, or encrypt them.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tracing::info;

use super::DbError;

/// One step of the schema.
#[derive(Debug)]
pub struct Migration {
    /// 1, 2, 3, ... in list order.
    pub version: i64,
    pub name: &'static str,
    /// One or more statements, run as a batch.
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "imports",
        // One row per one-time import of data kept elsewhere by an older version (such as
        // `chat.bans_file`), so that it happens once and a restart cannot undo later changes.
        sql: "CREATE TABLE imports (
                  name TEXT PRIMARY KEY,
                  source TEXT NOT NULL,
                  items INTEGER NOT NULL,
                  imported_at TEXT NOT NULL
              ) STRICT;",
    },
    Migration {
        version: 2,
        name: "chat_bans",
        // `value` is the lowercased nick or the address as text (`IpAddr` display form).
        sql: "CREATE TABLE chat_bans (
                  channel TEXT NOT NULL,
                  kind TEXT NOT NULL CHECK (kind IN ('nick', 'address')),
                  value TEXT NOT NULL,
                  created_at TEXT NOT NULL,
                  PRIMARY KEY (channel, kind, value)
              ) STRICT, WITHOUT ROWID;",
    },
    Migration {
        version: 3,
        name: "sign_in",
        // Sessions (found by the hash of the cookie; provider tokens sealed), onair's app on
        // each Mastodon server (client secret sealed), owners' go-live posting: db::identity.
        sql: super::identity::MIGRATION_SQL,
    },
    Migration {
        version: 4,
        name: "chat_identity_bans",
        // `identity` is `provider:id`, as in channels[].owners (chat_bans keeps nicks and
        // addresses; its CHECK cannot be widened in place).
        sql: "CREATE TABLE chat_identity_bans (
                  channel TEXT NOT NULL,
                  identity TEXT NOT NULL,
                  created_at TEXT NOT NULL,
                  PRIMARY KEY (channel, identity)
              ) STRICT, WITHOUT ROWID;",
    },
    Migration {
        version: 5,
        name: "debate_questions",
        // Viewers' questions, their states and votes, kept with the broadcast they were
        // asked in: db::questions.
        sql: super::questions::MIGRATION_SQL,
    },
    Migration {
        version: 6,
        name: "recordings",
        // Recordings and their fsynced segments, rebuilt from the files: db::recordings.
        sql: super::recordings::MIGRATION_SQL,
    },
    Migration {
        version: 7,
        name: "recording_chat",
        // The chat log of each recording with each message's media time: db::recordings.
        sql: super::recordings::CHAT_MIGRATION_SQL,
    },
    Migration {
        version: 8,
        name: "recording_pins",
        // When the pinned question changed in each recording, at its media time:
        // db::recording_pins.
        sql: super::recording_pins::MIGRATION_SQL,
    },
];

/// The schema version this binary brings the database to.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies the pending migrations in order; returns the names of those applied now.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<Vec<&'static str>, DbError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TEXT NOT NULL
         ) STRICT;",
    )?;
    let mut applied = Vec::new();
    loop {
        // Read and apply under one write lock, so two processes opening the same file at
        // once cannot both apply a step.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = check(&tx, path)?;
        let Some(next) = MIGRATIONS.iter().find(|m| m.version > current) else {
            tx.commit()?;
            break;
        };
        let failed = |source| DbError::Migration {
            version: next.version,
            name: next.name,
            source,
        };
        tx.execute_batch(next.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            (next.version, next.name, super::now()),
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        info!(
            version = next.version,
            name = next.name,
            "database migration applied"
        );
        applied.push(next.name);
    }
    Ok(applied)
}

/// The version the database is at, after checking that what it has applied is a prefix of
/// [`MIGRATIONS`].
fn check(conn: &Connection, path: &Path) -> Result<i64, DbError> {
    let found: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    let found = found.unwrap_or(0);
    if found > latest() {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found,
            known: latest(),
        });
    }
    let mut stmt = conn.prepare("SELECT version, name FROM schema_migrations ORDER BY version")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for (i, row) in rows.enumerate() {
        let (version, name) = row?;
        let expected = MIGRATIONS.get(i).filter(|m| m.version == version);
        match expected {
            Some(m) if m.name == name => {}
            _ => {
                return Err(DbError::Diverged {
                    path: path.to_path_buf(),
                    version,
                    found: name,
                    expected: MIGRATIONS
                        .iter()
                        .find(|m| m.version == version)
                        .map_or("(none)", |m| m.name),
                })
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp_file(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("onair-migrations-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("onair.sqlite3")
    }

    fn recorded(conn: &Connection) -> Vec<(i64, String, String)> {
        let mut s = conn
            .prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn versions_count_up_from_one_with_unique_names() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{m:?}");
            assert!(
                MIGRATIONS.iter().filter(|o| o.name == m.name).count() == 1,
                "{m:?}"
            );
        }
    }

    #[test]
    fn a_fresh_database_gets_every_migration_once_and_a_reopen_none() {
        let path = temp_file("fresh");
        let mut conn = Connection::open(&path).unwrap();
        let names: Vec<_> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(migrate(&mut conn, &path).unwrap(), names);
        let first = recorded(&conn);
        assert_eq!(first.len(), MIGRATIONS.len());
        assert!(
            first.iter().all(|(_, _, at)| at.ends_with('Z')),
            "{first:?}"
        );
        // The tables exist.
        conn.execute("INSERT INTO imports VALUES ('x', 'y', 0, 'z')", [])
            .unwrap();
        drop(conn);

        let mut again = Connection::open(&path).unwrap();
        assert!(migrate(&mut again, &path).unwrap().is_empty());
        assert_eq!(recorded(&again), first, "nothing applied or re-recorded");
        let kept: i64 = again
            .query_row("SELECT COUNT(*) FROM imports", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "data survives a reopen");
    }

    #[test]
    fn a_database_at_an_older_version_gets_only_the_rest() {
        let path = temp_file("older");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        // As a database left by the previous release: the last step not applied yet.
        let last = MIGRATIONS.last().unwrap();
        conn.execute(
            "DELETE FROM schema_migrations WHERE version = ?1",
            [last.version],
        )
        .unwrap();
        // ... and without the tables it makes.
        for table in last.sql.split("CREATE TABLE ").skip(1) {
            let name = table.split_whitespace().next().unwrap();
            conn.execute_batch(&format!("DROP TABLE {name}")).unwrap();
        }
        assert_eq!(migrate(&mut conn, &path).unwrap(), [last.name]);
        assert_eq!(recorded(&conn).len(), MIGRATIONS.len());
    }

    #[test]
    fn a_newer_or_diverged_database_is_refused_untouched() {
        let path = temp_file("newer");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        let future = latest() + 1;
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'from_the_future', 'now')",
            [future],
        )
        .unwrap();
        let e = migrate(&mut conn, &path).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, DbError::TooNew { found, known, .. } if found == future && known == latest()),
            "{e:?}"
        );
        assert!(
            text.contains("newer than this onair") && text.contains(&path.display().to_string()),
            "{text}"
        );
        assert_eq!(
            recorded(&conn).len(),
            MIGRATIONS.len() + 1,
            "left as it was"
        );

        conn.execute("DELETE FROM schema_migrations WHERE version = ?1", [future])
            .unwrap();
        conn.execute(
            "UPDATE schema_migrations SET name = 'something_else' WHERE version = 1",
            [],
        )
        .unwrap();
        let e = migrate(&mut conn, &path).unwrap_err();
        assert!(
            matches!(&e, DbError::Diverged { version: 1, found, .. } if found == "something_else"),
            "{e:?}"
        );
    }
}
