//! Typed functions for `recording_pins` (migration 8): when the pinned question of a channel
//! changed while a recording was made, at which media time, and to what. One row per change:
//! a question pinned (its id and JSON as viewers saw it) or the pin cleared (both null).
//! The recorder writes them through its chat log task (`record::chatlog`); `http::vod` reads
//! them and turns them into the pinned questions of the replay ([`periods`]). Rows go with
//! their recording (cascade).

use rusqlite::{params, Connection};

use super::DbError;

/// Schema of migration 8.
pub const MIGRATION_SQL: &str = "CREATE TABLE recording_pins (
        channel TEXT NOT NULL,
        recording TEXT NOT NULL,
        -- Order of the changes (two in the same millisecond keep theirs).
        seq INTEGER NOT NULL,
        -- Media time of the change in the recording, milliseconds.
        offset_ms INTEGER NOT NULL,
        -- The question pinned from then on; both NULL: no question pinned from then on.
        question_id INTEGER,
        -- JSON of chat::questions::QuestionView as it was when pinned.
        question TEXT,
        PRIMARY KEY (channel, recording, seq),
        FOREIGN KEY (channel, recording) REFERENCES recordings (channel, id) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;";

/// One change of the pinned question.
#[derive(Debug, Clone, PartialEq)]
pub struct PinRow {
    pub offset_ms: i64,
    pub question_id: Option<i64>,
    /// JSON of the question; `None` when the pin was cleared.
    pub question: Option<String>,
}

/// Logs a change (nothing if the recording is gone).
pub fn add(conn: &Connection, channel: &str, id: &str, row: &PinRow) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO recording_pins (channel, recording, seq, offset_ms, question_id, question) \
         SELECT ?1, ?2, \
           (SELECT COALESCE(MAX(seq), 0) + 1 FROM recording_pins WHERE channel = ?1 AND recording = ?2), \
           ?3, ?4, ?5 \
         WHERE EXISTS (SELECT 1 FROM recordings WHERE channel = ?1 AND id = ?2)",
        params![channel, id, row.offset_ms, row.question_id, row.question],
    )?;
    Ok(())
}

/// A recording's pin changes, in the order they happened.
pub fn list(conn: &Connection, channel: &str, id: &str) -> Result<Vec<PinRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT offset_ms, question_id, question FROM recording_pins \
         WHERE channel = ?1 AND recording = ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map([channel, id], |r| {
        Ok(PinRow {
            offset_ms: r.get(0)?,
            question_id: r.get(1)?,
            question: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A question on screen in the replay: from `from_ms` until `until_ms` (`None`: to the end).
#[derive(Debug, Clone, PartialEq)]
pub struct PinPeriod {
    pub from_ms: i64,
    pub until_ms: Option<i64>,
    /// JSON of the question.
    pub question: String,
}

/// A question on screen for less than this is left out of the replay: pinned by mistake and
/// replaced at once, or the previous show's pin logged at a recording's start just before
/// the debate cleared it for the new show.
pub const MIN_PERIOD_MS: i64 = 500;

/// The periods during which a question was pinned, from the changes in order: each pin lasts
/// until the next change. Offsets never go back (a change logged with an earlier media time
/// than the one before it counts at that one's); periods shorter than [`MIN_PERIOD_MS`] are
/// left out.
pub fn periods(rows: &[PinRow]) -> Vec<PinPeriod> {
    let mut out = Vec::new();
    let mut open: Option<(i64, &str)> = None;
    let mut last = 0i64;
    for r in rows {
        let at = r.offset_ms.max(last);
        last = at;
        if let Some((from, q)) = open.take() {
            if at - from >= MIN_PERIOD_MS {
                out.push(PinPeriod {
                    from_ms: from,
                    until_ms: Some(at),
                    question: q.to_string(),
                });
            }
        }
        open = r.question.as_deref().map(|q| (at, q));
    }
    if let Some((from, q)) = open {
        out.push(PinPeriod {
            from_ms: from,
            until_ms: None,
            question: q.to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::recordings::{self, Recording};

    fn pin(offset_ms: i64, q: Option<(i64, &str)>) -> PinRow {
        PinRow {
            offset_ms,
            question_id: q.map(|q| q.0),
            question: q.map(|q| q.1.to_string()),
        }
    }

    #[test]
    fn each_pin_lasts_until_the_next_change() {
        let rows = [
            pin(1000, Some((1, "a"))),
            pin(5000, Some((2, "b"))),
            pin(5300, Some((3, "c"))),
            pin(4000, None),
            pin(9000, Some((1, "a"))),
        ];
        let got = periods(&rows);
        let spans: Vec<(i64, Option<i64>, &str)> = got
            .iter()
            .map(|p| (p.from_ms, p.until_ms, p.question.as_str()))
            .collect();
        assert_eq!(
            spans,
            [
                (1000, Some(5000), "a"),
                // "b" was replaced at once; the clear logged "at 4 s" counts at 5.3 s.
                (9000, None, "a"),
            ]
        );
        assert!(periods(&[]).is_empty());
        assert!(periods(&[pin(0, None)]).is_empty());
    }

    #[test]
    fn rows_keep_their_order_and_go_with_their_recording() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        crate::db::migrations::migrate(&mut c, std::path::Path::new(":memory:")).unwrap();
        let r = Recording {
            channel: "alice".into(),
            id: "20261202T170000Z".into(),
            started_at: "2026-12-02T17:00:00.000Z".into(),
            ended_at: None,
            title: None,
            duration: 0,
            bytes: 0,
        };
        recordings::insert(&c, &r).unwrap();
        add(&c, "alice", &r.id, &pin(2000, Some((4, "{\"id\":4}")))).unwrap();
        add(&c, "alice", &r.id, &pin(2000, None)).unwrap();
        add(&c, "alice", "nope", &pin(1, None)).unwrap();
        let got = list(&c, "alice", &r.id).unwrap();
        assert_eq!(got, [pin(2000, Some((4, "{\"id\":4}"))), pin(2000, None)]);
        assert!(list(&c, "alice", "nope").unwrap().is_empty());
        recordings::delete(&c, "alice", &r.id).unwrap();
        assert!(list(&c, "alice", &r.id).unwrap().is_empty());
    }
}
