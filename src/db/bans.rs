//! Typed functions for the `chat_bans` table (per channel, the banned nicks and addresses)
//! and `chat_identity_bans` (the banned signed-in identities).
//!
//! The chat owns the rules (nicks compare case-insensitively, so it passes
//! [`BanTarget::normalized`] targets) and keeps its own in-memory copy for the hot path; it
//! loads [`all`] at start and writes every change through [`add`] / [`remove`] before
//! answering. Rows speak the chat's types ([`BanTarget`], [`Bans`], [`BanMap`]).

use std::net::IpAddr;

use rusqlite::Connection;
use tracing::error;

use super::DbError;
use crate::chat::bans::BanMap;
use crate::chat::BanTarget;

const NICK: &str = "nick";
const ADDRESS: &str = "address";

/// The `chat_bans` row of a nick or address ban; `None` for an identity (its own table).
fn row(target: &BanTarget) -> Option<(&'static str, String)> {
    match target {
        BanTarget::Nick(n) => Some((NICK, n.clone())),
        BanTarget::Address(a) => Some((ADDRESS, a.to_string())),
        BanTarget::Identity(_) => None,
    }
}

/// Every channel's bans (channels without bans absent).
pub fn all(conn: &Connection) -> Result<BanMap, DbError> {
    let mut stmt = conn.prepare("SELECT channel, kind, value FROM chat_bans")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut map = BanMap::new();
    for row in rows {
        let (channel, kind, value) = row?;
        if kind == NICK {
            map.entry(channel).or_default().nicks.insert(value);
            continue;
        }
        match value.parse::<IpAddr>() {
            Ok(ip) => {
                map.entry(channel).or_default().addresses.insert(ip);
            }
            // Only a hand edit gets here (we store `IpAddr`'s own text): say so and keep the
            // other bans in force rather than refuse to start.
            Err(_) => {
                error!(%channel, %value, "chat_bans: skipping a row whose address does not parse")
            }
        }
    }
    let mut stmt = conn.prepare("SELECT channel, identity FROM chat_identity_bans")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (channel, identity) = row?;
        map.entry(channel).or_default().identities.insert(identity);
    }
    Ok(map)
}

/// Bans `target` on `channel`; false if it already was.
pub fn add(conn: &Connection, channel: &str, target: &BanTarget) -> Result<bool, DbError> {
    let Some((kind, value)) = row(target) else {
        let BanTarget::Identity(i) = target else {
            return Ok(false);
        };
        let n = conn.execute(
            "INSERT OR IGNORE INTO chat_identity_bans (channel, identity, created_at) \
             VALUES (?1, ?2, ?3)",
            (channel, i, super::now()),
        )?;
        return Ok(n == 1);
    };
    let n = conn.execute(
        "INSERT OR IGNORE INTO chat_bans (channel, kind, value, created_at) \
         VALUES (?1, ?2, ?3, ?4)",
        (channel, kind, value, super::now()),
    )?;
    Ok(n == 1)
}

/// Lifts the ban of `target` on `channel`; false if there was none.
pub fn remove(conn: &Connection, channel: &str, target: &BanTarget) -> Result<bool, DbError> {
    let Some((kind, value)) = row(target) else {
        let BanTarget::Identity(i) = target else {
            return Ok(false);
        };
        let n = conn.execute(
            "DELETE FROM chat_identity_bans WHERE channel = ?1 AND identity = ?2",
            (channel, i),
        )?;
        return Ok(n == 1);
    };
    let n = conn.execute(
        "DELETE FROM chat_bans WHERE channel = ?1 AND kind = ?2 AND value = ?3",
        (channel, kind, value),
    )?;
    Ok(n == 1)
}

/// Adds every ban of `map` (normalized; those already there are kept); returns how many were
/// new.
pub fn add_all(conn: &Connection, map: &BanMap) -> Result<usize, DbError> {
    let mut new = 0;
    for (channel, bans) in map {
        let nicks = bans.nicks.iter().map(|n| BanTarget::Nick(n.clone()));
        let addresses = bans.addresses.iter().map(|a| BanTarget::Address(*a));
        let identities = bans
            .identities
            .iter()
            .map(|i| BanTarget::Identity(i.clone()));
        for target in nicks.chain(addresses).chain(identities) {
            if add(conn, channel, &target.normalized())? {
                new += 1;
            }
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn nick(n: &str) -> BanTarget {
        BanTarget::Nick(n.into())
    }

    fn addr(a: &str) -> BanTarget {
        BanTarget::Address(a.parse().unwrap())
    }

    #[tokio::test]
    async fn add_list_remove() {
        let db = Db::open_in_memory().await.unwrap();
        let map = db
            .write(|tx| {
                assert!(add(tx, "alice", &nick("troll"))?);
                assert!(!add(tx, "alice", &nick("troll"))?, "already banned");
                assert!(add(tx, "alice", &addr("203.0.113.7"))?);
                assert!(add(tx, "alice", &addr("2001:db8::1"))?);
                assert!(add(tx, "bob", &nick("troll"))?, "per channel");
                all(tx)
            })
            .await
            .unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(
            map["alice"].nicks.iter().collect::<Vec<_>>(),
            [&"troll".to_string()]
        );
        assert_eq!(map["alice"].addresses.len(), 2);
        assert_eq!(map["bob"].addresses.len(), 0);

        let (lifted, again, map) = db
            .write(|tx| {
                let lifted = remove(tx, "alice", &nick("troll"))?;
                let again = remove(tx, "alice", &nick("troll"))?;
                remove(tx, "alice", &addr("203.0.113.7"))?;
                remove(tx, "alice", &addr("2001:db8::1"))?;
                Ok((lifted, again, all(tx)?))
            })
            .await
            .unwrap();
        assert!(lifted && !again);
        assert!(!map.contains_key("alice"), "no bans, no entry: {map:?}");
        assert!(map["bob"].nicks.contains("troll"));
    }

    #[tokio::test]
    async fn add_all_normalizes_and_counts_new_ones() {
        let db = Db::open_in_memory().await.unwrap();
        let mut map = BanMap::new();
        let alice = map.entry("alice".into()).or_default();
        alice.nicks.insert(" Troll ".into());
        alice.addresses.insert("198.51.100.7".parse().unwrap());
        let (first, second, stored) = db
            .write(move |tx| {
                let first = add_all(tx, &map)?;
                let second = add_all(tx, &map)?;
                Ok((first, second, all(tx)?))
            })
            .await
            .unwrap();
        assert_eq!((first, second), (2, 0));
        assert!(stored["alice"].nicks.contains("troll"), "{stored:?}");
    }

    #[tokio::test]
    async fn a_hand_edited_address_is_skipped_and_the_rest_kept() {
        let db = Db::open_in_memory().await.unwrap();
        let map = db
            .write(|tx| {
                tx.execute(
                    "INSERT INTO chat_bans VALUES ('alice', 'address', 'nonsense', 'now')",
                    [],
                )?;
                add(tx, "alice", &nick("troll"))?;
                all(tx)
            })
            .await
            .unwrap();
        assert!(map["alice"].addresses.is_empty());
        assert!(map["alice"].nicks.contains("troll"));
    }
}
