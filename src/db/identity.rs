//! Typed functions for the sign-in tables: `auth_sessions` (one row per signed-in browser:
//! the identity, when it ends, and the provider's grant sealed by `identity::crypto`),
//! `mastodon_apps` (onair's registration on each Mastodon server, its client secret sealed)
//! and `owner_announce` (a channel owner's choice to have the go-live posted from their own
//! account, tied to their session: it ends with it).
//!
//! Nothing secret is stored in clear: the session row is found by the SHA-256 of the cookie
//! value, and grants and client secrets are opaque sealed bytes here. `identity/` does the
//! sealing and opening; this file only reads and writes rows.

use rusqlite::{Connection, OptionalExtension};

use super::DbError;
use crate::identity::{Identity, Provider};

/// A session as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 (hex) of the cookie value.
    pub id_hash: String,
    pub identity: Identity,
    /// The viewer asked for, and the provider granted, posting.
    pub can_cross_post: bool,
    /// When the provider's grant stops working (X: two hours), RFC 3339; `None`: with the session.
    pub grant_expires_at: Option<String>,
    /// The grant, sealed with the row's `id_hash` as associated data.
    pub grant_sealed: Vec<u8>,
    pub created_at: String,
    pub expires_at: String,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("identity", &self.identity.key())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// onair's registration on a Mastodon server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRow {
    pub origin: String,
    pub redirect_uri: String,
    pub client_id: String,
    /// Sealed with `origin + " " + redirect_uri` as associated data.
    pub secret_sealed: Vec<u8>,
    pub scopes: String,
    /// `identity::mastodon::Endpoints` as JSON.
    pub endpoints: String,
}

/// The tables, appended to `migrations::MIGRATIONS` as one step.
pub const MIGRATION_SQL: &str = "
CREATE TABLE auth_sessions (
    id_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('mastodon', 'x', 'bluesky')),
    account_id TEXT NOT NULL,
    handle TEXT NOT NULL,
    display_name TEXT NOT NULL,
    avatar_url TEXT,
    profile_url TEXT NOT NULL,
    can_cross_post INTEGER NOT NULL,
    grant_expires_at TEXT,
    grant_sealed BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX auth_sessions_by_expiry ON auth_sessions (expires_at);
CREATE INDEX auth_sessions_by_account ON auth_sessions (provider, account_id);
CREATE TABLE mastodon_apps (
    origin TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    client_id TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    scopes TEXT NOT NULL,
    endpoints TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (origin, redirect_uri)
) STRICT, WITHOUT ROWID;
CREATE TABLE owner_announce (
    channel TEXT PRIMARY KEY,
    session TEXT NOT NULL REFERENCES auth_sessions (id_hash) ON DELETE CASCADE,
    created_at TEXT NOT NULL
) STRICT;
";

const SESSION_COLUMNS: &str = "id_hash, provider, account_id, handle, display_name, avatar_url, \
     profile_url, can_cross_post, grant_expires_at, grant_sealed, created_at, expires_at";

fn session_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<(SessionRow, String)> {
    let provider: String = r.get(1)?;
    Ok((
        SessionRow {
            id_hash: r.get(0)?,
            identity: Identity {
                // Checked below; the CHECK constraint keeps other values out.
                provider: Provider::Mastodon,
                id: r.get(2)?,
                handle: r.get(3)?,
                display_name: r.get(4)?,
                avatar_url: r.get(5)?,
                profile_url: r.get(6)?,
            },
            can_cross_post: r.get::<_, i64>(7)? != 0,
            grant_expires_at: r.get(8)?,
            grant_sealed: r.get(9)?,
            created_at: r.get(10)?,
            expires_at: r.get(11)?,
        },
        provider,
    ))
}

fn with_provider((mut row, provider): (SessionRow, String)) -> Result<SessionRow, DbError> {
    row.identity.provider = Provider::parse(&provider).ok_or_else(|| DbError::BadRow {
        table: "auth_sessions",
        reason: format!("unknown provider {provider:?}"),
    })?;
    Ok(row)
}

/// Stores a new session.
pub fn insert_session(conn: &Connection, s: &SessionRow) -> Result<(), DbError> {
    conn.execute(
        &format!(
            "INSERT INTO auth_sessions ({SESSION_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        rusqlite::params![
            s.id_hash,
            s.identity.provider.as_str(),
            s.identity.id,
            s.identity.handle,
            s.identity.display_name,
            s.identity.avatar_url,
            s.identity.profile_url,
            s.can_cross_post as i64,
            s.grant_expires_at,
            s.grant_sealed,
            s.created_at,
            s.expires_at,
        ],
    )?;
    Ok(())
}

/// The session with this id hash, if it has not expired at `now` (RFC 3339).
pub fn session(conn: &Connection, id_hash: &str, now: &str) -> Result<Option<SessionRow>, DbError> {
    conn.query_row(
        &format!(
            "SELECT {SESSION_COLUMNS} FROM auth_sessions WHERE id_hash = ?1 AND expires_at > ?2"
        ),
        (id_hash, now),
        session_from,
    )
    .optional()?
    .map(with_provider)
    .transpose()
}

/// Replaces a session's sealed grant (refreshed tokens).
pub fn update_grant(
    conn: &Connection,
    id_hash: &str,
    sealed: &[u8],
    grant_expires_at: Option<&str>,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE auth_sessions SET grant_sealed = ?2, grant_expires_at = ?3 WHERE id_hash = ?1",
        rusqlite::params![id_hash, sealed, grant_expires_at],
    )?;
    Ok(n == 1)
}

/// Ends a session (logout); its grant goes with it. False if there was none.
pub fn delete_session(conn: &Connection, id_hash: &str) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM auth_sessions WHERE id_hash = ?1", [id_hash])? == 1)
}

/// Deletes the sessions (and grants) expired at `now`; returns how many.
pub fn delete_expired(conn: &Connection, now: &str) -> Result<usize, DbError> {
    Ok(conn.execute("DELETE FROM auth_sessions WHERE expires_at <= ?1", [now])?)
}

/// Sessions stored (for metrics and tests).
pub fn count_sessions(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM auth_sessions", [], |r| r.get(0))?)
}

/// onair's app on `origin` for `redirect_uri`.
pub fn mastodon_app(
    conn: &Connection,
    origin: &str,
    redirect_uri: &str,
) -> Result<Option<AppRow>, DbError> {
    Ok(conn
        .query_row(
            "SELECT origin, redirect_uri, client_id, secret_sealed, scopes, endpoints \
             FROM mastodon_apps WHERE origin = ?1 AND redirect_uri = ?2",
            (origin, redirect_uri),
            |r| {
                Ok(AppRow {
                    origin: r.get(0)?,
                    redirect_uri: r.get(1)?,
                    client_id: r.get(2)?,
                    secret_sealed: r.get(3)?,
                    scopes: r.get(4)?,
                    endpoints: r.get(5)?,
                })
            },
        )
        .optional()?)
}

/// Keeps (or replaces) onair's app on a server.
pub fn put_mastodon_app(conn: &Connection, a: &AppRow) -> Result<(), DbError> {
    conn.execute(
        "INSERT OR REPLACE INTO mastodon_apps \
         (origin, redirect_uri, client_id, secret_sealed, scopes, endpoints, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            a.origin,
            a.redirect_uri,
            a.client_id,
            a.secret_sealed,
            a.scopes,
            a.endpoints,
            super::now()
        ],
    )?;
    Ok(())
}

/// Sets (`Some(session)`) or clears the owner's go-live posting of `channel`.
pub fn set_owner_announce(
    conn: &Connection,
    channel: &str,
    session: Option<&str>,
) -> Result<(), DbError> {
    match session {
        Some(s) => conn.execute(
            "INSERT OR REPLACE INTO owner_announce (channel, session, created_at) VALUES (?1, ?2, ?3)",
            (channel, s, super::now()),
        )?,
        None => conn.execute("DELETE FROM owner_announce WHERE channel = ?1", [channel])?,
    };
    Ok(())
}

/// The session whose account posts `channel`'s go-live, if one is set and still valid.
pub fn owner_announce(
    conn: &Connection,
    channel: &str,
    now: &str,
) -> Result<Option<SessionRow>, DbError> {
    conn.query_row(
        &format!(
            "SELECT {} FROM owner_announce o JOIN auth_sessions s ON s.id_hash = o.session \
             WHERE o.channel = ?1 AND s.expires_at > ?2",
            SESSION_COLUMNS
                .split(", ")
                .map(|c| format!("s.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (channel, now),
        session_from,
    )
    .optional()?
    .map(with_provider)
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().expect("db");
        c.execute_batch("PRAGMA foreign_keys = ON;").expect("fk");
        c.execute_batch(MIGRATION_SQL).expect("schema");
        c
    }

    fn row(hash: &str, expires: &str) -> SessionRow {
        SessionRow {
            id_hash: hash.into(),
            identity: Identity {
                provider: Provider::Bluesky,
                id: "did:plc:abc".into(),
                handle: "@a.test".into(),
                display_name: "A".into(),
                avatar_url: None,
                profile_url: "https://bsky.app/profile/did:plc:abc".into(),
            },
            can_cross_post: true,
            grant_expires_at: None,
            grant_sealed: vec![1, 2, 3],
            created_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: expires.into(),
        }
    }

    #[test]
    fn sessions_expire_and_end() {
        let c = conn();
        insert_session(&c, &row("h1", "2026-02-01T00:00:00.000Z")).expect("insert");
        insert_session(&c, &row("h2", "2026-01-02T00:00:00.000Z")).expect("insert");
        let now = "2026-01-15T00:00:00.000Z";
        let s = session(&c, "h1", now).expect("read").expect("found");
        assert_eq!(s.identity.provider, Provider::Bluesky);
        assert!(s.can_cross_post);
        assert!(session(&c, "h2", now).expect("read").is_none(), "expired");
        set_owner_announce(&c, "alice", Some("h1")).expect("owner");
        assert_eq!(
            owner_announce(&c, "alice", now)
                .expect("read")
                .map(|s| s.id_hash),
            Some("h1".into())
        );
        assert_eq!(delete_expired(&c, now).expect("tidy"), 1);
        assert!(update_grant(&c, "h1", &[9], Some(now)).expect("update"));
        assert!(delete_session(&c, "h1").expect("logout"));
        assert!(
            owner_announce(&c, "alice", now).expect("read").is_none(),
            "goes with the session"
        );
        assert_eq!(count_sessions(&c).expect("count"), 0);
    }

    #[test]
    fn apps_by_server_and_redirect() {
        let c = conn();
        let a = AppRow {
            origin: "https://m.example".into(),
            redirect_uri: "https://live/cb".into(),
            client_id: "cid".into(),
            secret_sealed: vec![7],
            scopes: "profile".into(),
            endpoints: "{}".into(),
        };
        put_mastodon_app(&c, &a).expect("put");
        assert_eq!(
            mastodon_app(&c, "https://m.example", "https://live/cb").expect("read"),
            Some(a.clone())
        );
        assert!(mastodon_app(&c, "https://m.example", "https://other/cb")
            .expect("read")
            .is_none());
        let mut b = a.clone();
        b.scopes = "profile write:statuses".into();
        put_mastodon_app(&c, &b).expect("replace");
        assert_eq!(
            mastodon_app(&c, &a.origin, &a.redirect_uri)
                .expect("read")
                .map(|x| x.scopes),
            Some(b.scopes)
        );
    }
}
