//! Bans that outlive the process: per channel, the banned nicks and addresses, kept in
//! `chat.bans_file` (JSON) when it is set. The file is written whole after every change, to a
//! temporary file renamed over the old one, so a crash mid-write leaves the previous version;
//! it is read at start.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{error, info};

/// One channel's bans. Nicks are kept lowercased (compared case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bans {
    pub nicks: BTreeSet<String>,
    pub addresses: BTreeSet<IpAddr>,
}

impl Bans {
    pub fn is_empty(&self) -> bool {
        self.nicks.is_empty() && self.addresses.is_empty()
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

    /// The saved bans. A missing file is a first start; one that cannot be read or parsed is
    /// moved aside (so that the next save cannot destroy what an admin may want back) and
    /// reported, and the chat starts without bans rather than not at all.
    pub fn load(&self) -> BanMap {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BanMap::new(),
            Err(e) => {
                error!(path = %self.path.display(), error = %e, "chat.bans_file cannot be read; starting without saved bans");
                return BanMap::new();
            }
        };
        match serde_json::from_str::<BanMap>(&text) {
            Ok(map) => {
                let count: usize = map
                    .values()
                    .map(|b| b.nicks.len() + b.addresses.len())
                    .sum();
                info!(path = %self.path.display(), bans = count, "chat bans loaded");
                map
            }
            Err(e) => {
                let aside = aside_path(&self.path);
                let moved = std::fs::rename(&self.path, &aside).is_ok();
                error!(path = %self.path.display(), error = %e, moved_to = %aside.display(), moved, "chat.bans_file is not valid; starting without saved bans");
                BanMap::new()
            }
        }
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

fn aside_path(path: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".unreadable-{stamp}"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(file.load(), BanMap::new(), "missing file: no bans");
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
        let loaded = file.load();
        assert_eq!(loaded.len(), 1, "channels without bans are not written");
        assert_eq!(loaded["alice"], map["alice"]);

        std::fs::write(&path, "{ not json").unwrap();
        assert_eq!(file.load(), BanMap::new());
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
}
