//! Rebuilding the recordings index from the files, at start: every recording directory with a
//! `meta.json` is listed, with each rendition's segments as its `segments.log` gives them, up to
//! the last one whose file is complete on disk. Rows of recordings whose directory is gone
//! are dropped; recordings still marked live (the server was killed mid-show) are ended.
//! A recording marked wholly uploaded to the object store (`uploaded`, see `record::upload`)
//! keeps every logged segment, present locally or not. Running it on an index that matches
//! the files changes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use tracing::warn;

use super::disk::{self, Meta};
use super::{RecordError, SOURCE};
use crate::db::recordings::{self, Recording, SegmentRow};
use crate::db::Db;

/// What a rebuild found and changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub recordings: usize,
    pub segments_added: usize,
    pub removed: usize,
}

/// One recording directory as found.
#[derive(Debug)]
struct Found {
    meta: Meta,
    renditions: Vec<(String, Vec<SegmentRow>)>,
}

pub async fn rebuild(root: &Path, db: &Db) -> Result<RebuildReport, RecordError> {
    let r = root.to_path_buf();
    let found = tokio::task::spawn_blocking(move || scan(&r))
        .await
        .map_err(|e| RecordError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let report = db
        .write(move |tx| {
            let mut report = RebuildReport {
                recordings: found.len(),
                ..Default::default()
            };
            let mut present = HashSet::new();
            for f in &found {
                present.insert((f.meta.channel.clone(), f.meta.id.clone()));
                let source = f.renditions.iter().find(|(r, _)| r == SOURCE);
                let ended = source
                    .and_then(|(_, s)| s.last())
                    .and_then(end_of)
                    .unwrap_or_else(|| f.meta.started_at.clone());
                recordings::insert(
                    tx,
                    &Recording {
                        channel: f.meta.channel.clone(),
                        id: f.meta.id.clone(),
                        started_at: f.meta.started_at.clone(),
                        ended_at: Some(ended),
                        title: f.meta.title.clone(),
                        duration: 0,
                        bytes: 0,
                    },
                )?;
                for (rendition, segs) in &f.renditions {
                    let listed =
                        recordings::segment_count(tx, &f.meta.channel, &f.meta.id, rendition)?;
                    for s in segs.iter().skip(listed.max(0) as usize) {
                        if recordings::add_segment(
                            tx,
                            &f.meta.channel,
                            &f.meta.id,
                            s,
                            rendition == SOURCE,
                        )? {
                            report.segments_added += 1;
                        }
                    }
                }
            }
            for r in recordings::all(tx)? {
                if !present.contains(&(r.channel.clone(), r.id.clone())) {
                    recordings::delete(tx, &r.channel, &r.id)?;
                    report.removed += 1;
                }
            }
            recordings::end_all_live(tx)?;
            Ok(report)
        })
        .await?;
    Ok(report)
}

/// When a segment ends, from its program time and duration.
fn end_of(s: &SegmentRow) -> Option<String> {
    let start = DateTime::parse_from_rfc3339(&s.program_time).ok()?;
    let end = start.with_timezone(&Utc) + chrono::Duration::milliseconds(s.duration / 90);
    Some(end.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn io(path: &Path, source: std::io::Error) -> RecordError {
    RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, RecordError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let e = e.map_err(|e| io(dir, e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push((name, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn scan(root: &Path) -> Result<Vec<Found>, RecordError> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (channel, cdir) in subdirs(root)? {
        if !crate::config::is_name(&channel) {
            continue;
        }
        for (id, rdir) in subdirs(&cdir)? {
            if !super::is_id(&id) {
                continue;
            }
            let meta_path = rdir.join(disk::META);
            let meta = std::fs::read(&meta_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            let Some(meta) = meta.filter(|m| m.channel == channel && m.id == id) else {
                warn!(path = %rdir.display(), "recording directory without a valid meta.json: left out of the index");
                continue;
            };
            let uploaded = rdir.join(super::store::UPLOADED).is_file();
            let mut renditions = Vec::new();
            for (rendition, d) in subdirs(&rdir)? {
                if !crate::config::is_name(&rendition) {
                    continue;
                }
                let text = std::fs::read_to_string(d.join(disk::LOG)).unwrap_or_default();
                let mut segs = disk::parse_log(&rendition, &text);
                // Up to the last segment complete on disk (with its init segment), unless the
                // recording is wholly in the object store (its media may be pruned locally).
                if uploaded {
                    renditions.push((rendition, segs));
                    continue;
                }
                let complete = segs
                    .iter()
                    .position(|s| {
                        let ok = std::fs::metadata(d.join(&s.file))
                            .map(|m| m.len() == s.bytes as u64)
                            .unwrap_or(false);
                        !ok || !d.join(&s.init).is_file()
                    })
                    .unwrap_or(segs.len());
                segs.truncate(complete);
                renditions.push((rendition, segs));
            }
            out.push(Found { meta, renditions });
        }
    }
    Ok(out)
}
