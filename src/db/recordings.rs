//! Typed functions for the recordings index: `recordings` (one row per recorded broadcast),
//! `recording_segments` (each fsynced segment of each rendition, in order) and `recording_chat`
//! (the chat log with each message's media time).
//!
//! The files under `{storage.data_dir}/recordings/` are the truth: `record::index` rebuilds
//! the first two tables from them at start (a crash between a segment's fsync and its row, or
//! a lost database), so these rows only ever describe segments that are on disk. The recorder
//! writes; `http::vod` reads.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::DbError;

/// Schema of migration 6.
pub const MIGRATION_SQL: &str = "CREATE TABLE recordings (
        channel TEXT NOT NULL,
        id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        -- NULL while the broadcast is being recorded.
        ended_at TEXT,
        title TEXT,
        -- Of the source rendition, in 90 kHz ticks; bytes of every rendition's segments.
        duration INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (channel, id)
    ) STRICT;
    CREATE TABLE recording_segments (
        channel TEXT NOT NULL,
        recording TEXT NOT NULL,
        rendition TEXT NOT NULL,
        seq INTEGER NOT NULL,
        file TEXT NOT NULL,
        init TEXT NOT NULL,
        duration INTEGER NOT NULL,
        program_time TEXT NOT NULL,
        discontinuity INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        codecs TEXT NOT NULL,
        resolution TEXT NOT NULL,
        PRIMARY KEY (channel, recording, rendition, seq),
        FOREIGN KEY (channel, recording) REFERENCES recordings (channel, id) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;";

/// Schema of migration 7.
pub const CHAT_MIGRATION_SQL: &str = "CREATE TABLE recording_chat (
        channel TEXT NOT NULL,
        recording TEXT NOT NULL,
        message_id INTEGER NOT NULL,
        -- Media time of the message in the recording, milliseconds.
        offset_ms INTEGER NOT NULL,
        -- The message as clients saw it (JSON of chat::ChatMessage).
        message TEXT NOT NULL,
        PRIMARY KEY (channel, recording, message_id),
        FOREIGN KEY (channel, recording) REFERENCES recordings (channel, id) ON DELETE CASCADE
    ) STRICT, WITHOUT ROWID;";

/// One recording.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recording {
    pub channel: String,
    pub id: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub title: Option<String>,
    /// Source rendition, 90 kHz.
    pub duration: i64,
    pub bytes: i64,
}

impl Recording {
    pub fn live(&self) -> bool {
        self.ended_at.is_none()
    }
    pub fn duration_seconds(&self) -> f64 {
        self.duration as f64 / 90_000.0
    }
}

/// One listed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    pub rendition: String,
    pub seq: i64,
    /// File name in the rendition's directory (`000001.m4s`).
    pub file: String,
    /// Its initialization segment's file name (`init-1.mp4`).
    pub init: String,
    /// 90 kHz.
    pub duration: i64,
    /// RFC 3339 wall-clock time of its first frame (EXT-X-PROGRAM-DATE-TIME).
    pub program_time: String,
    pub discontinuity: bool,
    pub bytes: i64,
    /// RFC 6381 codecs of the stream it was written with.
    pub codecs: String,
    /// `WxH`, empty for audio only.
    pub resolution: String,
}

fn recording(r: &rusqlite::Row<'_>) -> rusqlite::Result<Recording> {
    Ok(Recording {
        channel: r.get(0)?,
        id: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        title: r.get(4)?,
        duration: r.get(5)?,
        bytes: r.get(6)?,
    })
}

const COLUMNS: &str = "channel, id, started_at, ended_at, title, duration, bytes";

/// Adds a recording (nothing if it exists).
pub fn insert(conn: &Connection, r: &Recording) -> Result<(), DbError> {
    conn.execute(
        "INSERT OR IGNORE INTO recordings (channel, id, started_at, ended_at, title, duration, bytes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![r.channel, r.id, r.started_at, r.ended_at, r.title, r.duration, r.bytes],
    )?;
    Ok(())
}

/// Lists a segment and adds it to its recording's totals (duration counts the source only).
/// Idempotent: a segment already listed changes nothing.
pub fn add_segment(
    conn: &Connection,
    channel: &str,
    id: &str,
    s: &SegmentRow,
    source: bool,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO recording_segments (channel, recording, rendition, seq, file, init, \
         duration, program_time, discontinuity, bytes, codecs, resolution) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            channel,
            id,
            s.rendition,
            s.seq,
            s.file,
            s.init,
            s.duration,
            s.program_time,
            s.discontinuity,
            s.bytes,
            s.codecs,
            s.resolution
        ],
    )?;
    if n == 1 {
        conn.execute(
            "UPDATE recordings SET bytes = bytes + ?3, duration = duration + ?4 \
             WHERE channel = ?1 AND id = ?2",
            params![channel, id, s.bytes, if source { s.duration } else { 0 }],
        )?;
    }
    Ok(n == 1)
}

/// Marks a recording ended (`Some`) or live again after a reconnect (`None`).
pub fn set_ended(
    conn: &Connection,
    channel: &str,
    id: &str,
    ended_at: Option<&str>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE recordings SET ended_at = ?3 WHERE channel = ?1 AND id = ?2",
        params![channel, id, ended_at],
    )?;
    Ok(())
}

/// Ends every recording still marked live (at start: nothing is being recorded yet).
pub fn end_all_live(conn: &Connection) -> Result<usize, DbError> {
    Ok(conn.execute(
        "UPDATE recordings SET ended_at = ?1 WHERE ended_at IS NULL",
        [super::now()],
    )?)
}

/// A channel's recordings, newest first.
pub fn list(conn: &Connection, channel: &str) -> Result<Vec<Recording>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM recordings WHERE channel = ?1 ORDER BY started_at DESC, id DESC"
    ))?;
    let rows = stmt.query_map([channel], recording)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every recording, oldest first (retention).
pub fn all(conn: &Connection) -> Result<Vec<Recording>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM recordings ORDER BY started_at ASC, id ASC"
    ))?;
    let rows = stmt.query_map([], recording)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(conn: &Connection, channel: &str, id: &str) -> Result<Option<Recording>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM recordings WHERE channel = ?1 AND id = ?2"),
            [channel, id],
            recording,
        )
        .optional()?)
}

/// A rendition's segments in order.
pub fn segments(
    conn: &Connection,
    channel: &str,
    id: &str,
    rendition: &str,
) -> Result<Vec<SegmentRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT rendition, seq, file, init, duration, program_time, discontinuity, bytes, codecs, \
         resolution FROM recording_segments WHERE channel = ?1 AND recording = ?2 \
         AND rendition = ?3 ORDER BY seq",
    )?;
    let rows = stmt.query_map([channel, id, rendition], |r| {
        Ok(SegmentRow {
            rendition: r.get(0)?,
            seq: r.get(1)?,
            file: r.get(2)?,
            init: r.get(3)?,
            duration: r.get(4)?,
            program_time: r.get(5)?,
            discontinuity: r.get(6)?,
            bytes: r.get(7)?,
            codecs: r.get(8)?,
            resolution: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A rendition of a recording as its master playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionRow {
    pub rendition: String,
    /// Of the last segment.
    pub codecs: String,
    pub resolution: String,
    /// Peak bits per second over its segments.
    pub peak_bps: u64,
    pub average_bps: u64,
}

/// The renditions of a recording: `source` first, then by name.
pub fn renditions(
    conn: &Connection,
    channel: &str,
    id: &str,
) -> Result<Vec<RenditionRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT rendition, \
           (SELECT codecs FROM recording_segments s2 WHERE s2.channel = s.channel \
              AND s2.recording = s.recording AND s2.rendition = s.rendition ORDER BY seq DESC LIMIT 1), \
           (SELECT resolution FROM recording_segments s2 WHERE s2.channel = s.channel \
              AND s2.recording = s.recording AND s2.rendition = s.rendition ORDER BY seq DESC LIMIT 1), \
           MAX(bytes * 8 * 90000 / MAX(duration, 1)), SUM(bytes) * 8 * 90000 / MAX(SUM(duration), 1) \
         FROM recording_segments s WHERE channel = ?1 AND recording = ?2 \
         GROUP BY rendition ORDER BY rendition <> 'source', rendition",
    )?;
    let rows = stmt.query_map([channel, id], |r| {
        Ok(RenditionRow {
            rendition: r.get(0)?,
            codecs: r.get(1)?,
            resolution: r.get(2)?,
            peak_bps: r.get::<_, i64>(3)?.max(0) as u64,
            average_bps: r.get::<_, i64>(4)?.max(0) as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Number of listed segments of a rendition (index rebuild).
pub fn segment_count(
    conn: &Connection,
    channel: &str,
    id: &str,
    rendition: &str,
) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM recording_segments WHERE channel = ?1 AND recording = ?2 AND rendition = ?3",
        [channel, id, rendition],
        |r| r.get(0),
    )?)
}

/// Deletes a recording with its segments and chat log; false if there was none.
pub fn delete(conn: &Connection, channel: &str, id: &str) -> Result<bool, DbError> {
    Ok(conn.execute(
        "DELETE FROM recordings WHERE channel = ?1 AND id = ?2",
        [channel, id],
    )? == 1)
}

/// One message of the chat log.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRow {
    pub message_id: i64,
    pub offset_ms: i64,
    /// JSON of the message.
    pub message: String,
}

/// Logs a chat message (nothing if the recording is gone or it is already logged).
pub fn add_chat(conn: &Connection, channel: &str, id: &str, row: &ChatRow) -> Result<(), DbError> {
    conn.execute(
        "INSERT OR IGNORE INTO recording_chat (channel, recording, message_id, offset_ms, message) \
         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS \
           (SELECT 1 FROM recordings WHERE channel = ?1 AND id = ?2)",
        params![channel, id, row.message_id, row.offset_ms, row.message],
    )?;
    Ok(())
}

/// Removes a deleted message from every recording of the channel.
pub fn delete_chat(conn: &Connection, channel: &str, message_id: i64) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM recording_chat WHERE channel = ?1 AND message_id = ?2",
        params![channel, message_id],
    )?;
    Ok(())
}

/// A recording's chat log in media order.
pub fn chat(conn: &Connection, channel: &str, id: &str) -> Result<Vec<ChatRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT message_id, offset_ms, message FROM recording_chat \
         WHERE channel = ?1 AND recording = ?2 ORDER BY offset_ms, message_id",
    )?;
    let rows = stmt.query_map([channel, id], |r| {
        Ok(ChatRow {
            message_id: r.get(0)?,
            offset_ms: r.get(1)?,
            message: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        super::super::migrations::migrate(&mut c, std::path::Path::new(":memory:")).unwrap();
        c
    }

    fn seg(rendition: &str, seq: i64) -> SegmentRow {
        SegmentRow {
            rendition: rendition.into(),
            seq,
            file: format!("{seq:06}.m4s"),
            init: "init-1.mp4".into(),
            duration: 180_000,
            program_time: "2026-12-02T17:00:00.000Z".into(),
            discontinuity: false,
            bytes: 100_000,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: "320x180".into(),
        }
    }

    #[test]
    fn segments_totals_chat_and_cascade() {
        let c = db();
        let r = Recording {
            channel: "alice".into(),
            id: "20261202T170000Z".into(),
            started_at: "2026-12-02T17:00:00.000Z".into(),
            ended_at: None,
            title: Some("t".into()),
            duration: 0,
            bytes: 0,
        };
        insert(&c, &r).unwrap();
        assert!(add_segment(&c, "alice", &r.id, &seg("source", 1), true).unwrap());
        assert!(!add_segment(&c, "alice", &r.id, &seg("source", 1), true).unwrap());
        add_segment(&c, "alice", &r.id, &seg("source", 2), true).unwrap();
        add_segment(&c, "alice", &r.id, &seg("360p", 1), false).unwrap();
        let got = get(&c, "alice", &r.id).unwrap().unwrap();
        assert_eq!(got.duration, 360_000);
        assert_eq!(got.bytes, 300_000);
        assert!(got.live());
        let rs = renditions(&c, "alice", &r.id).unwrap();
        assert_eq!(rs[0].rendition, "source");
        assert_eq!(rs[0].peak_bps, 400_000);
        assert_eq!(segments(&c, "alice", &r.id, "source").unwrap().len(), 2);
        add_chat(
            &c,
            "alice",
            &r.id,
            &ChatRow {
                message_id: 7,
                offset_ms: 1500,
                message: "{}".into(),
            },
        )
        .unwrap();
        add_chat(
            &c,
            "alice",
            "nope",
            &ChatRow {
                message_id: 8,
                offset_ms: 1,
                message: "{}".into(),
            },
        )
        .unwrap();
        assert_eq!(chat(&c, "alice", &r.id).unwrap().len(), 1);
        set_ended(&c, "alice", &r.id, Some("2026-12-02T18:00:00.000Z")).unwrap();
        assert!(!get(&c, "alice", &r.id).unwrap().unwrap().live());
        assert_eq!(list(&c, "alice").unwrap().len(), 1);
        assert!(delete(&c, "alice", &r.id).unwrap());
        assert_eq!(segment_count(&c, "alice", &r.id, "source").unwrap(), 0);
        assert!(chat(&c, "alice", &r.id).unwrap().is_empty());
    }
}
