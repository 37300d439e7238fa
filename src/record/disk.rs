//! A recording's disk task: the only writer of its directory while it is made. Jobs come from
//! the channel task through a bounded channel; each file is written and fsynced on the
//! blocking pool, its line appended to `segments.log` (fsynced), and only then the segment is
//! listed in the database. A write error ends the recording (logged, counted); the live
//! stream is never told.
//!
//! `segments.log` (one per rendition) is what the index is rebuilt from: one line per listed
//! segment, tab-separated, `seq file init duration program_time discontinuity bytes codecs
//! resolution` (see [`log_line`] / [`parse_log`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{Recorder, SOURCE};
use crate::db::recordings::{self, Recording, SegmentRow};

/// `meta.json` of a recording directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub channel: String,
    pub id: String,
    pub started_at: String,
    pub title: Option<String>,
}

pub const META: &str = "meta.json";
pub const LOG: &str = "segments.log";

/// What the channel task asks of the disk task.
#[derive(Debug)]
pub enum DiskJob {
    /// A new recording: its directory, `meta.json` and row.
    Begin(Meta),
    /// The broadcaster is back within the grace period: the recording is live again.
    Resume,
    Init {
        rendition: String,
        file: String,
        data: Bytes,
    },
    Segment {
        row: SegmentRow,
        data: Bytes,
    },
    /// The recording's poster (a live thumbnail, see [`super::poster`]).
    Poster(Bytes),
}

/// The poster's file name in a recording's directory.
pub const POSTER: &str = "poster.jpg";

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs one recording session's jobs until the channel task drops its sender, then marks the
/// recording ended. `prev` is the previous session's task of the same recording (a reconnect),
/// waited for first so that its end cannot overwrite this one's resume.
pub async fn run(
    rec: Arc<Recorder>,
    channel: String,
    id: String,
    mut rx: mpsc::Receiver<DiskJob>,
    prev: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
) {
    if let Some(p) = prev {
        let _ = p.await;
    }
    let dir = rec.dir(&channel, &id);
    while let Some(job) = rx.recv().await {
        if let Err(e) = handle(&rec, &channel, &id, &dir, job).await {
            failed.store(true, Ordering::Release);
            error!(%channel, recording = %id, error = %e, "recording stopped: cannot write it (the live stream goes on)");
            metrics::counter!("onair_record_dropped_total", "reason" => "write_error").increment(1);
            break;
        }
    }
    // Nothing more is taken: the channel task sees the channel closed.
    drop(rx);
    let (c, i) = (channel.clone(), id.clone());
    let ended = crate::db::now();
    if let Err(e) = rec
        .db
        .write(move |tx| recordings::set_ended(tx, &c, &i, Some(&ended)))
        .await
    {
        error!(%channel, recording = %id, error = %e, "recording end not saved");
    }
    info!(%channel, recording = %id, "recording session closed");
    rec.upload_finish(&channel, &id);
    rec.kick_retention();
}

async fn handle(
    rec: &Recorder,
    channel: &str,
    id: &str,
    dir: &Path,
    job: DiskJob,
) -> Result<(), DiskError> {
    match job {
        DiskJob::Begin(meta) => {
            let d = dir.to_path_buf();
            let m = meta.clone();
            blocking(move || write_meta(&d, &m)).await?;
            let row = Recording {
                channel: meta.channel,
                id: meta.id,
                started_at: meta.started_at,
                ended_at: None,
                title: meta.title,
                duration: 0,
                bytes: 0,
            };
            let started = row.started_at.clone();
            rec.db.write(move |tx| recordings::insert(tx, &row)).await?;
            rec.uploaded(channel, id, vec![META.to_string()]);
            rec.listed(channel, id, &started);
        }
        DiskJob::Resume => {
            // No longer wholly uploaded: the next finish marks it again.
            let _ = std::fs::remove_file(dir.join(super::store::UPLOADED));
            let (c, i) = (channel.to_string(), id.to_string());
            rec.db
                .write(move |tx| recordings::set_ended(tx, &c, &i, None))
                .await?;
        }
        DiskJob::Init {
            rendition,
            file,
            data,
        } => {
            let d = dir.join(&rendition);
            let rel = format!("{rendition}/{file}");
            blocking(move || {
                std::fs::create_dir_all(&d).map_err(io(&d))?;
                write_synced(&d.join(&file), &data)?;
                sync_dir(&d)
            })
            .await?;
            rec.uploaded(channel, id, vec![rel]);
        }
        DiskJob::Segment { row, data } => {
            let d = dir.join(&row.rendition);
            let r = row.clone();
            blocking(move || {
                std::fs::create_dir_all(&d).map_err(io(&d))?;
                write_synced(&d.join(&r.file), &data)?;
                append_synced(&d.join(LOG), log_line(&r).as_bytes())?;
                sync_dir(&d)
            })
            .await?;
            let (c, i) = (channel.to_string(), id.to_string());
            let source = row.rendition == SOURCE;
            let rels = vec![
                format!("{}/{}", row.rendition, row.file),
                format!("{}/{LOG}", row.rendition),
            ];
            rec.db
                .write(move |tx| recordings::add_segment(tx, &c, &i, &row, source))
                .await?;
            rec.uploaded(channel, id, rels);
        }
        DiskJob::Poster(jpeg) => {
            // A picture that cannot be written costs the recording nothing (it has none).
            let d = dir.to_path_buf();
            match blocking(move || write_replacing(&d, POSTER, &jpeg)).await {
                Ok(()) => {
                    info!(%channel, recording = %id, "recording poster saved");
                    rec.uploaded(channel, id, vec![POSTER.to_string()]);
                }
                Err(e) => {
                    warn!(%channel, recording = %id, error = %e, "recording poster not saved")
                }
            }
        }
    }
    Ok(())
}

/// Writes `name` in `dir` whole or not at all: a temporary file, fsynced, renamed over it,
/// then the directory fsynced.
fn write_replacing(dir: &Path, name: &str, data: &[u8]) -> Result<(), DiskError> {
    let tmp = dir.join(format!("{name}.tmp"));
    write_synced(&tmp, data)?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

async fn blocking<F>(f: F) -> Result<(), DiskError>
where
    F: FnOnce() -> Result<(), DiskError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(DiskError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Creates the directory and writes `meta.json` (write, fsync, rename, fsync the directory).
pub fn write_meta(dir: &Path, meta: &Meta) -> Result<(), DiskError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let text = serde_json::to_vec_pretty(meta).unwrap_or_default();
    write_replacing(dir, META, &text)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

pub fn write_synced(path: &Path, data: &[u8]) -> Result<(), DiskError> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn append_synced(path: &Path, data: &[u8]) -> Result<(), DiskError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_data().map_err(io(path))
}

/// Makes the directory's entries (new files) durable.
fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

/// One `segments.log` line (no tabs or newlines can occur in the fields).
pub fn log_line(s: &SegmentRow) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        s.seq,
        s.file,
        s.init,
        s.duration,
        s.program_time,
        u8::from(s.discontinuity),
        s.bytes,
        s.codecs,
        s.resolution
    )
}

/// The segments of a `segments.log`, in order, up to the first line that is incomplete or
/// does not parse (a crash mid-append).
pub fn parse_log(rendition: &str, text: &str) -> Vec<SegmentRow> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else {
            break;
        };
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 9 {
            break;
        }
        let (Ok(seq), Ok(duration), Ok(bytes)) = (f[0].parse(), f[3].parse(), f[6].parse::<i64>())
        else {
            break;
        };
        if !super::is_file_name(f[1]) || !super::is_file_name(f[2]) {
            break;
        }
        out.push(SegmentRow {
            rendition: rendition.to_string(),
            seq,
            file: f[1].to_string(),
            init: f[2].to_string(),
            duration,
            program_time: f[4].to_string(),
            discontinuity: f[5] == "1",
            bytes,
            codecs: f[7].to_string(),
            resolution: f[8].to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_round_trip_and_a_torn_line_is_dropped() {
        let s = SegmentRow {
            rendition: "source".into(),
            seq: 3,
            file: "000003.m4s".into(),
            init: "init-1.mp4".into(),
            duration: 180_000,
            program_time: "2026-12-02T17:00:04.000Z".into(),
            discontinuity: true,
            bytes: 4242,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            resolution: "320x180".into(),
        };
        let mut text = log_line(&s);
        text.push_str(&log_line(&SegmentRow {
            seq: 4,
            ..s.clone()
        }));
        text.push_str("5\t000005.m4s\tinit-1.mp4\t18");
        let got = parse_log("source", &text);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], s);
        assert_eq!(parse_log("source", "garbage\n"), vec![]);
    }
}
