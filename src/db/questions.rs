//! Typed functions for the debate tables (migration 5): `questions` (one row per viewer's
//! question, its state and the broadcast it was asked in) and `question_votes` (one row per
//! question and voter).
//!
//! `chat::questions` owns the rules and keeps every channel's questions in memory for the hot
//! path; it loads [`all`] at start and writes each change through these functions, committed
//! before the viewer or admin is answered (votes in one transaction per batch, see
//! `chat::questions`). A question stays with its broadcast (`broadcast` is the `started_at` of
//! the live broadcast it was asked in): the replays issue shows them beside the recording.

use rusqlite::{Connection, OptionalExtension};

use super::DbError;
use crate::identity::Identity;

/// The schema of migration 5.
pub const MIGRATION_SQL: &str = "
CREATE TABLE questions (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    broadcast TEXT,
    text TEXT NOT NULL,
    nick TEXT NOT NULL,
    author TEXT,
    asker TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('open', 'shortlisted', 'pinned', 'answered', 'dismissed')),
    asked_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX questions_by_channel ON questions (channel, id);
CREATE TABLE question_votes (
    question INTEGER NOT NULL REFERENCES questions (id) ON DELETE CASCADE,
    voter TEXT NOT NULL,
    voted_at TEXT NOT NULL,
    PRIMARY KEY (question, voter)
) STRICT, WITHOUT ROWID;
";

/// A stored question with its voters.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionRow {
    pub id: u64,
    pub channel: String,
    /// `started_at` (RFC 3339) of the broadcast live when it was asked; `None` if offline.
    pub broadcast: Option<String>,
    pub text: String,
    pub nick: String,
    /// The signed-in asker as the provider vouched.
    pub author: Option<Identity>,
    /// Who asked, as the limits count viewers (`chat::questions::Viewer::key`).
    pub asker: String,
    /// `open`, `shortlisted`, `pinned`, `answered` or `dismissed`.
    pub state: String,
    pub asked_at: String,
    pub voters: Vec<String>,
}

/// A new question (no voters yet); returns its id.
pub fn insert(conn: &Connection, q: &QuestionRow) -> Result<u64, DbError> {
    insert_with(conn, q, None)?;
    Ok(conn.last_insert_rowid() as u64)
}

/// A question under the id it already has (a cluster's: the id of its event, the same on
/// every node); false if this node has it already.
pub fn insert_as(conn: &Connection, q: &QuestionRow) -> Result<bool, DbError> {
    Ok(insert_with(conn, q, Some(q.id))? == 1)
}

/// A new question under the first free id from `from` on (a node of a cluster while Redis is
/// lost numbers from its clock, in µs like the cluster's ids, so that its questions do not take
/// the ids another node gives its own meanwhile); returns the id.
pub fn insert_from(conn: &Connection, q: &QuestionRow, from: u64) -> Result<u64, DbError> {
    let mut row = q.clone();
    for id in from..from.saturating_add(1000) {
        row.id = id;
        if insert_as(conn, &row)? {
            return Ok(id);
        }
    }
    insert(conn, q)
}

fn insert_with(conn: &Connection, q: &QuestionRow, id: Option<u64>) -> Result<usize, DbError> {
    let author = match &q.author {
        Some(a) => Some(serde_json::to_string(a).map_err(|e| DbError::BadRow {
            table: "questions",
            reason: e.to_string(),
        })?),
        None => None,
    };
    // A plain insert fails on a constraint; a copy of the cluster's skips what it has.
    let verb = if id.is_some() {
        "INSERT OR IGNORE"
    } else {
        "INSERT"
    };
    Ok(conn.execute(
        &format!(
            "{verb} INTO questions (id, channel, broadcast, text, nick, author, asker, \
         state, asked_at, updated_at) VALUES (?9, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"
        ),
        (
            &q.channel,
            &q.broadcast,
            &q.text,
            &q.nick,
            author,
            &q.asker,
            &q.state,
            &q.asked_at,
            id.map(|i| i as i64),
        ),
    )?)
}

/// Sets a question's state; false if there is no such question.
pub fn set_state(conn: &Connection, id: u64, state: &str) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE questions SET state = ?2, updated_at = ?3 WHERE id = ?1",
        (id as i64, state, super::now()),
    )?;
    Ok(n == 1)
}

/// Puts a question with the broadcast it was asked before; false if there is no such question.
pub fn set_broadcast(conn: &Connection, id: u64, broadcast: &str) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE questions SET broadcast = ?2 WHERE id = ?1",
        (id as i64, broadcast),
    )?;
    Ok(n == 1)
}

/// Adds (`true`) or takes back (`false`) a vote; false if nothing changed.
pub fn vote(conn: &Connection, id: u64, voter: &str, add: bool) -> Result<bool, DbError> {
    let n = if add {
        conn.execute(
            "INSERT OR IGNORE INTO question_votes (question, voter, voted_at) VALUES (?1, ?2, ?3)",
            (id as i64, voter, super::now()),
        )?
    } else {
        conn.execute(
            "DELETE FROM question_votes WHERE question = ?1 AND voter = ?2",
            (id as i64, voter),
        )?
    };
    Ok(n == 1)
}

/// Every stored question of every channel, oldest first, with its voters.
pub fn all(conn: &Connection) -> Result<Vec<QuestionRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, channel, broadcast, text, nick, author, asker, state, asked_at \
         FROM questions ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, String>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, channel, broadcast, text, nick, author, asker, state, asked_at) = row?;
        let author = match author {
            Some(a) => Some(
                serde_json::from_str::<Identity>(&a).map_err(|e| DbError::BadRow {
                    table: "questions",
                    reason: format!("author of question {id}: {e}"),
                })?,
            ),
            None => None,
        };
        out.push(QuestionRow {
            id: id as u64,
            channel,
            broadcast,
            text,
            nick,
            author,
            asker,
            state,
            asked_at,
            voters: Vec::new(),
        });
    }
    let mut stmt = conn.prepare("SELECT question, voter FROM question_votes ORDER BY question")?;
    let votes = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut by_id: std::collections::HashMap<u64, Vec<String>> = Default::default();
    for v in votes {
        let (q, voter) = v?;
        by_id.entry(q as u64).or_default().push(voter);
    }
    for q in &mut out {
        q.voters = by_id.remove(&q.id).unwrap_or_default();
    }
    Ok(out)
}

/// One question's state, if it exists (for tests and checks).
pub fn state(conn: &Connection, id: u64) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT state FROM questions WHERE id = ?1",
            [id as i64],
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn row(channel: &str, text: &str) -> QuestionRow {
        QuestionRow {
            id: 0,
            channel: channel.into(),
            broadcast: None,
            text: text.into(),
            nick: "ann".into(),
            author: None,
            asker: "address:abc".into(),
            state: "open".into(),
            asked_at: crate::db::now(),
            voters: Vec::new(),
        }
    }

    #[tokio::test]
    async fn insert_vote_state_and_load() {
        let db = Db::open_in_memory().await.unwrap();
        let (a, b) = db
            .write(|tx| {
                Ok((
                    insert(tx, &row("alice", "one"))?,
                    insert(tx, &row("bob", "two"))?,
                ))
            })
            .await
            .unwrap();
        assert!(b > a);
        let changed = db
            .write(move |tx| {
                Ok((
                    vote(tx, a, "v1", true)?,
                    vote(tx, a, "v1", true)?,
                    vote(tx, a, "v2", true)?,
                    vote(tx, a, "v2", false)?,
                    set_state(tx, b, "pinned")?,
                    set_state(tx, 999, "pinned")?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(changed, (true, false, true, true, true, false));
        let all = db.call(|c| all(c)).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].voters, ["v1"]);
        assert_eq!(all[1].state, "pinned");
        assert_eq!(
            db.call(move |c| state(c, b)).await.unwrap().as_deref(),
            Some("pinned")
        );
        let bad = db.write(move |tx| set_state(tx, a, "nonsense")).await;
        assert!(bad.is_err(), "the CHECK keeps states to the five");
    }
}
