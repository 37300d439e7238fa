//! Ban sets (per channel, the banned nicks and addresses) and the deprecated `chat.bans_file`.
//!
//! Bans are kept in the database (`db::bans`). Before it, they were kept in `chat.bans_file`
//! (JSON, channel -> `{"nicks": [...], "addresses": [...]}`). [`import_once`] brings such a
//! file into the database at the first start that sees it and records that in the `imports`
//! table, in the same transaction, so a restart never imports it again (a lifted ban cannot
//! come back from the file). While the key stays set, [`rewrite`] keeps the file in step with
//! the database after every change, so that going back to an older onair loses nothing. The
//! file is written whole, to a temporary file renamed over the old one, so a crash mid-write
//! leaves the previous version.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{debug, error, info};

use super::channel::{ChannelState, ChatChannel, Ring};
use super::{unsaved, Chat, ChatError};
use crate::db::{self, Db, DbError};

/// The `imports` row that records the import of `chat.bans_file`.
pub const IMPORT_NAME: &str = "chat.bans_file";

/// One channel's bans. Nicks are kept lowercased (compared case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bans {
    pub nicks: BTreeSet<String>,
    pub addresses: BTreeSet<IpAddr>,
    /// Signed-in identities, `provider:id`; left out of the JSON when there are none, so the
    /// file stays readable by versions without sign-in.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub identities: BTreeSet<String>,
}

impl Bans {
    pub fn is_empty(&self) -> bool {
        self.nicks.is_empty() && self.addresses.is_empty() && self.identities.is_empty()
    }
}

/// Every channel's bans, by channel name: the file's content.
pub type BanMap = BTreeMap<String, Bans>;

/// The configured bans file.
pub struct BanFile {
    path: PathBuf,
}

impl BanFile {
    pub fn new(path: &str) -> Self {
        Self {
            path: PathBuf::from(path),
        }
    }

    /// The file's bans; `None` if there is no file to take them from. A file that cannot be
    /// read is reported; one that does not parse is also moved aside (so that the next
    /// rewrite cannot destroy what an admin may want back). Either way the chat starts without
    /// its bans rather than not at all.
    pub fn read(&self) -> Option<BanMap> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                error!(path = %self.path.display(), error = %e, "chat.bans_file cannot be read; its bans are not imported");
                return None;
            }
        };
        match serde_json::from_str::<BanMap>(&text) {
            Ok(map) => Some(map),
            Err(e) => {
                let aside = aside_path(&self.path);
                let moved = std::fs::rename(&self.path, &aside).is_ok();
                error!(path = %self.path.display(), error = %e, moved_to = %aside.display(), moved, "chat.bans_file is not valid; its bans are not imported");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `map` (channels without bans left out).
    pub fn save(&self, map: &BanMap) -> std::io::Result<()> {
        let kept: BanMap = map
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(c, b)| (c.clone(), b.clone()))
            .collect();
        let mut text = serde_json::to_string_pretty(&kept).map_err(std::io::Error::other)?;
        text.push('\n');
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

/// What [`import_once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The file's bans went into the database (`new` of them were not there yet).
    Now { bans: usize, new: usize },
    /// An earlier start imported it: the file is not read.
    Before { at: String },
    /// No (readable) file: nothing imported, and nothing recorded, so a file put there
    /// later is imported then.
    NoFile,
}

/// Imports `file` into the database unless an earlier start did; the bans and the record of
/// the import commit together. Runs on the database thread (file reading included).
pub async fn import_once(db: &Db, file: std::sync::Arc<BanFile>) -> Result<Imported, DbError> {
    let outcome = db
        .write(move |tx| {
            if let Some(done) = db::imports::get(tx, IMPORT_NAME)? {
                return Ok(Imported::Before {
                    at: done.imported_at,
                });
            }
            let Some(map) = file.read() else {
                return Ok(Imported::NoFile);
            };
            let bans = count(&map);
            let new = db::bans::add_all(tx, &map)?;
            let source = file.path().display().to_string();
            db::imports::record(tx, IMPORT_NAME, &source, bans as i64)?;
            Ok(Imported::Now { bans, new })
        })
        .await?;
    match &outcome {
        Imported::Now { bans, new } => {
            info!(
                bans,
                new, "chat.bans_file imported into the database (once)"
            )
        }
        Imported::Before { at } => {
            info!(imported_at = %at, "chat.bans_file was imported before; not read again")
        }
        Imported::NoFile => info!("chat.bans_file does not exist yet: nothing to import"),
    }
    Ok(outcome)
}

/// Rewrites `file` from the database's bans (on the database thread, after a change). A
/// failure is logged: the bans are safe in the database; only the deprecated file lags.
pub fn rewrite(conn: &rusqlite::Connection, file: &BanFile) {
    let saved = db::bans::all(conn)
        .map_err(|e| e.to_string())
        .and_then(|map| file.save(&map).map_err(|e| e.to_string()));
    if let Err(e) = saved {
        error!(path = %file.path.display(), error = %e, "chat.bans_file could not be rewritten; the bans are saved in the database");
    }
}

/// Bans in a map, nicks and addresses together.
pub fn count(map: &BanMap) -> usize {
    map.values()
        .map(|b| b.nicks.len() + b.addresses.len() + b.identities.len())
        .sum()
}

fn aside_path(path: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".unreadable-{stamp}"));
    path.with_file_name(name)
}

/// What a ban targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanTarget {
    /// Compared case-insensitively.
    Nick(String),
    Address(IpAddr),
    /// A signed-in identity, `provider:id` (as in `channels[].owners`): banned under any nick.
    Identity(String),
}

impl BanTarget {
    /// The form kept in memory and in the database: nicks trimmed and lowercased.
    pub fn normalized(&self) -> BanTarget {
        match self {
            BanTarget::Nick(n) => BanTarget::Nick(n.trim().to_lowercase()),
            BanTarget::Address(a) => BanTarget::Address(*a),
            BanTarget::Identity(i) => BanTarget::Identity(i.trim().to_string()),
        }
    }
}

impl ChatChannel {
    /// Adds a (normalized) ban in memory and deletes the target's messages still in the
    /// history; returns how many. Its open event streams end if it is an address.
    pub(super) fn apply_ban(&self, target: &BanTarget, history_len: usize) -> usize {
        let mut st = self.lock();
        let doomed = st.messages_of(target);
        match target {
            BanTarget::Nick(n) => {
                st.bans.nicks.insert(n.clone());
            }
            BanTarget::Address(a) => {
                st.bans.addresses.insert(*a);
                // Its open event streams end; new ones are refused while the ban lasts.
                let _ = self.events.send(Ring::Kick(*a));
            }
            BanTarget::Identity(i) => {
                st.bans.identities.insert(i.clone());
            }
        }
        st.history.retain(|h| !doomed.contains(&h.id));
        for id in &doomed {
            self.publish_delete(&mut st, history_len, *id);
        }
        // Addresses are personal data: debug level only.
        debug!(channel = %self.name, ?target, deleted = doomed.len(), "chat ban");
        info!(channel = %self.name, deleted = doomed.len(), "chat ban added");
        doomed.len()
    }

    /// Lifts a (normalized) ban in memory; false if there was none.
    pub(super) fn apply_unban(&self, target: &BanTarget) -> bool {
        let mut st = self.lock();
        match target {
            BanTarget::Nick(n) => st.bans.nicks.remove(n),
            BanTarget::Address(a) => st.bans.addresses.remove(a),
            BanTarget::Identity(i) => st.bans.identities.remove(i),
        }
    }
}

impl Chat {
    /// Bans a nick or an address and deletes its messages still in the history. Returns the
    /// number of messages deleted, once the ban is committed to the database.
    pub async fn ban(&self, channel: &str, target: &BanTarget) -> Result<usize, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let target = target.normalized();
        if let Some(deleted) = self.ban_shared(&ch, &target).await? {
            return Ok(deleted);
        }
        let (history, file) = (self.cfg.history, self.ban_file.clone());
        // All of it on the database thread: the commit, then memory, in the order of the
        // commits, and whole even if our caller stops waiting.
        self.db
            .call(move |conn| {
                db::bans::add(conn, ch.name.as_str(), &target)?;
                let deleted = ch.apply_ban(&target, history);
                if let Some(f) = file {
                    rewrite(conn, &f);
                }
                Ok(deleted)
            })
            .await
            .map_err(|e| unsaved(channel, "chat ban", e))
    }

    /// A channel's bans.
    pub fn bans(&self, channel: &str) -> Result<Bans, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let bans = ch.lock().bans.clone();
        Ok(bans)
    }

    /// Lifts a ban; false if there was none. Answers once the change is committed.
    pub async fn unban(&self, channel: &str, target: &BanTarget) -> Result<bool, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        let target = target.normalized();
        if let Some(lifted) = self.unban_shared(&ch, &target).await? {
            return Ok(lifted);
        }
        let file = self.ban_file.clone();
        self.db
            .call(move |conn| {
                let stored = db::bans::remove(conn, ch.name.as_str(), &target)?;
                let lifted = ch.apply_unban(&target) || stored;
                if lifted {
                    info!(channel = %ch.name, "chat ban lifted");
                    if let Some(f) = file {
                        rewrite(conn, &f);
                    }
                }
                Ok(lifted)
            })
            .await
            .map_err(|e| unsaved(channel, "chat unban", e))
    }
}

impl ChannelState {
    /// Ids of the target's messages still in the history.
    pub(super) fn messages_of(&self, target: &BanTarget) -> Vec<u64> {
        self.history
            .iter()
            .filter(|h| match (&h.author, target) {
                (Some(a), BanTarget::Nick(t)) => a.nick == *t,
                (Some(a), BanTarget::Address(t)) => a.addr == *t,
                (Some(a), BanTarget::Identity(t)) => a.identity.as_ref() == Some(t),
                _ => false,
            })
            .map(|h| h.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("onair-bans-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("bans.json")
    }

    #[test]
    fn saves_and_loads_and_moves_a_broken_file_aside() {
        let path = temp("roundtrip");
        let file = BanFile::new(path.to_str().unwrap());
        assert_eq!(file.read(), None, "missing file: nothing to import");
        let mut map = BanMap::new();
        map.entry("alice".into())
            .or_default()
            .nicks
            .insert("troll".into());
        map.entry("alice".into())
            .or_default()
            .addresses
            .insert("203.0.113.7".parse().unwrap());
        map.insert("bob".into(), Bans::default());
        file.save(&map).unwrap();
        let loaded = file.read().unwrap();
        assert_eq!(loaded.len(), 1, "channels without bans are not written");
        assert_eq!(loaded["alice"], map["alice"]);

        std::fs::write(&path, "{ not json").unwrap();
        assert_eq!(file.read(), None);
        assert!(!path.exists(), "the broken file was moved aside");
        let dir = path.parent().unwrap();
        let aside = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("bans.json.unreadable-")
            });
        assert!(aside);
    }

    #[tokio::test]
    async fn a_bans_file_is_imported_once() {
        let path = temp("import");
        let file = Arc::new(BanFile::new(path.to_str().unwrap()));
        let db = Db::open_in_memory().await.unwrap();
        assert_eq!(
            import_once(&db, file.clone()).await.unwrap(),
            Imported::NoFile
        );
        let recorded = |db: Db| async move {
            db.call(|c| db::imports::done(c, IMPORT_NAME))
                .await
                .unwrap()
        };
        assert!(
            !recorded(db.clone()).await,
            "a missing file is not recorded"
        );

        std::fs::write(
            &path,
            r#"{"alice": {"nicks": ["troll"], "addresses": ["203.0.113.7"]}, "bob": {}}"#,
        )
        .unwrap();
        assert_eq!(
            import_once(&db, file.clone()).await.unwrap(),
            Imported::Now { bans: 2, new: 2 }
        );
        assert!(recorded(db.clone()).await);
        // Lifted after the import: a later start must not bring it back from the file.
        db.write(|tx| db::bans::remove(tx, "alice", &crate::chat::BanTarget::Nick("troll".into())))
            .await
            .unwrap();
        assert!(matches!(
            import_once(&db, file.clone()).await.unwrap(),
            Imported::Before { .. }
        ));
        let map = db.call(|c| db::bans::all(c)).await.unwrap();
        assert!(map["alice"].nicks.is_empty(), "{map:?}");
        assert_eq!(map["alice"].addresses.len(), 1);

        // The rewrite keeps the file in step with the database.
        db.call(move |c| {
            rewrite(c, &file);
            Ok(())
        })
        .await
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let back: BanMap = serde_json::from_str(&text).unwrap();
        assert_eq!(back, map);
    }
}
