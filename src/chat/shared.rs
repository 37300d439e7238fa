//! The chat of a node in a cluster (`crate::cluster`): every change goes through the channel's
//! Redis stream, and comes back to every node (this one too) through [`Chat::apply_shared`] in
//! stream order, numbered by the cluster. So ids, history and moderation are the same on
//! every node, and `Last-Event-ID` resumes on any of them. Checks (bans, rate limits, slow
//! mode) run on the node that took the request, as on one node. While Redis is lost each call
//! here does what a single node does.
//!
//! A new kind of event (the debate's questions, pins, timers) needs no code here: send it
//! with [`Chat::broadcast`]; [`Chat::apply_shared`] frames and keeps kinds it does not know.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tracing::info;

use super::{bans, unsaved, Author, BanTarget, Chat, ChatChannel, ChatError, ChatMessage};
use crate::cluster::{Cluster, Event};
use crate::db;
use crate::identity::Identity;

/// A ban target as it travels: `{"nick": …}`, `{"address": …}` or `{"identity": …}`.
fn target_json(t: &BanTarget) -> Value {
    match t {
        BanTarget::Nick(n) => json!({ "nick": n }),
        BanTarget::Address(a) => json!({ "address": a.to_string() }),
        BanTarget::Identity(i) => json!({ "identity": i }),
    }
}

fn target_of(v: &Value) -> Option<BanTarget> {
    if let Some(n) = v.get("nick").and_then(Value::as_str) {
        return Some(BanTarget::Nick(n.to_string()));
    }
    if let Some(a) = v.get("address").and_then(Value::as_str) {
        return a.parse::<IpAddr>().ok().map(BanTarget::Address);
    }
    v.get("identity")
        .and_then(Value::as_str)
        .map(|i| BanTarget::Identity(i.to_string()))
}

impl Chat {
    /// Joins the cluster: from now on, channels take their ids from it.
    pub fn attach_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
        // Channels the housekeeping made before this (nothing said in them yet) drop their
        // clock-made ids: in a cluster only the cluster's ids may reach a client.
        for ch in self.all() {
            let mut st = ch.lock();
            if st.history.is_empty() {
                st.last_id = 0;
            }
        }
    }

    /// The cluster while Redis answers.
    pub(super) fn shared(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get().filter(|c| c.online())
    }

    /// This node's viewers plus, in a cluster, the other nodes'.
    pub(super) fn total_viewers(&self, ch: &ChatChannel, now: Instant) -> u64 {
        let others = self
            .cluster
            .get()
            .and_then(|c| c.other_viewers(ch.name.as_str()))
            .unwrap_or(0);
        ch.viewers(now) + others
    }

    /// This node's own viewers per channel, for the cluster's sums.
    pub fn local_viewers(&self) -> Vec<(String, u64)> {
        let now = Instant::now();
        self.all()
            .iter()
            .map(|ch| (ch.name.to_string(), ch.viewers(now)))
            .collect()
    }

    /// When a channel live on another node went live.
    pub(super) fn remote_live_since(&self, channel: &str) -> Option<DateTime<Utc>> {
        let o = self.cluster.get()?.remote_origin(channel)?;
        DateTime::parse_from_rfc3339(&o.started_at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Redis was just lost: this node numbers its own events from now on, each channel from
    /// the moment of the loss in µs (the cluster's ids are Redis's clock in µs). So ids keep
    /// growing when the cluster's come back, the nodes' own ids differ, and a viewer who
    /// resumes on another node gets that node's events since about the moment it left.
    pub fn cluster_lost(&self) {
        let now = Utc::now().timestamp_micros().max(0) as u64;
        for ch in self.all() {
            let mut st = ch.lock();
            st.last_id = st.last_id.max(now);
        }
    }

    /// The channel's last cluster id as Redis has it (a node joining, or Redis back).
    pub fn seed_shared_id(&self, channel: &str, id: u64) {
        if let Some(ch) = self.channel(channel) {
            let mut st = ch.lock();
            st.last_id = st.last_id.max(id);
        }
    }

    /// One event of the channel's stream, on every node in stream order.
    pub fn apply_shared(&self, channel: &str, ev: &Event) {
        let Some(ch) = self.channel(channel) else {
            return;
        };
        let h = self.cfg.history;
        match ev.kind.as_str() {
            "chat" => {
                let Ok(who) = serde_json::from_value::<Author>(ev.meta["who"].clone()) else {
                    return;
                };
                let mut data = ev.data.clone();
                data["id"] = json!(ev.id);
                let mut st = ch.lock();
                if let Some(names) = ev.meta["signed"].as_array() {
                    st.signed_names
                        .extend(names.iter().filter_map(Value::as_str).map(str::to_string));
                }
                ch.publish_at(&mut st, h, ev.id, "chat", &data, Some(Some(who)));
                ch.messages
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            "delete" => {
                let id = ev.data["id"].as_u64().unwrap_or(0);
                let mut st = ch.lock();
                st.history.retain(|m| !(m.id == id && m.author.is_some()));
                ch.publish_at(&mut st, h, ev.id, "delete", &ev.data, Some(None));
            }
            "ban" | "unban" => {
                let Some(target) = target_of(&ev.meta) else {
                    return;
                };
                self.seed_shared_id(channel, ev.id);
                if ev.kind == "ban" {
                    ch.add_ban(&target);
                } else {
                    ch.apply_unban(&target);
                }
                if ev.node != self.cluster.get().map(|c| c.node()).unwrap_or_default() {
                    self.persist_ban(channel, target, ev.kind == "ban");
                }
            }
            "slow" => {
                let seconds = ev.data["seconds"].as_u64().unwrap_or(0);
                let mut st = ch.lock();
                st.last_id = st.last_id.max(ev.id);
                st.set_slow_mode(Duration::from_secs(seconds));
            }
            // Registry only (a takeover): the channel stays live for its viewers.
            "origin" => self.seed_shared_id(channel, ev.id),
            // live, offline, and kinds added later: framed and kept as they come.
            kind => {
                let mut st = ch.lock();
                ch.publish_at(&mut st, h, ev.id, kind, &ev.data, Some(None));
            }
        }
    }

    /// Another node's ban, kept in this node's database too (for its restarts).
    fn persist_ban(&self, channel: &str, target: BanTarget, add: bool) {
        let (db, name, file) = (self.db.clone(), channel.to_string(), self.ban_file.clone());
        tokio::spawn(async move {
            let r = db
                .call(move |conn| {
                    if add {
                        db::bans::add(conn, &name, &target)?;
                    } else {
                        db::bans::remove(conn, &name, &target)?;
                    }
                    if let Some(f) = file {
                        bans::rewrite(conn, &f);
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "a ban from another node was not saved here");
            }
        });
    }

    /// `POST /api/channels/{c}/chat`: [`Chat::post`], through the cluster when there is one.
    pub async fn submit(
        &self,
        channel: &str,
        addr: IpAddr,
        nick: &str,
        text: &str,
        author: Option<&Identity>,
    ) -> Result<ChatMessage, ChatError> {
        let Some(c) = self.shared() else {
            return self.post(channel, addr, nick, text, author);
        };
        let (ch, a) = self.admit(channel, addr, nick, text, author)?;
        let data =
            json!({"nick": a.msg.nick, "text": a.msg.text, "ts": a.msg.ts, "author": a.msg.author});
        let meta = json!({"who": a.who, "signed": a.signed_names});
        match c.append(channel, &[("chat", data, meta)]).await {
            Some(ids) => Ok(ChatMessage {
                id: ids.first().copied().unwrap_or(0),
                ..a.msg
            }),
            None => Ok(ch.commit(self.cfg.history, a)),
        }
    }

    /// Sends an event of any kind to the channel's viewers on every node, kept in the history;
    /// returns its id.
    pub async fn broadcast(
        &self,
        channel: &str,
        kind: &str,
        data: Value,
    ) -> Result<u64, ChatError> {
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        if let Some(c) = self.shared() {
            if let Some(ids) = c
                .append(channel, &[(kind, data.clone(), Value::Null)])
                .await
            {
                return Ok(ids.first().copied().unwrap_or(0));
            }
        }
        let mut st = ch.lock();
        Ok(ch.publish(&mut st, self.cfg.history, kind, &data, Some(None)))
    }

    /// [`Chat::delete`], through the cluster when there is one.
    pub async fn delete_shared(&self, channel: &str, id: u64) -> Result<(), ChatError> {
        let Some(c) = self.shared() else {
            return self.delete(channel, id);
        };
        let ch = self.channel(channel).ok_or(ChatError::NoChannel)?;
        if !ch
            .lock()
            .history
            .iter()
            .any(|h| h.id == id && h.author.is_some())
        {
            return Err(ChatError::NoSuchMessage { id });
        }
        match c
            .append(channel, &[("delete", json!({ "id": id }), Value::Null)])
            .await
        {
            Some(_) => {
                info!(channel, id, "chat message deleted (cluster)");
                Ok(())
            }
            None => self.delete(channel, id),
        }
    }

    /// [`Chat::set_slow_mode`], through the cluster when there is one.
    pub async fn set_slow_mode_shared(&self, channel: &str, seconds: u64) -> Result<(), ChatError> {
        let Some(c) = self.shared() else {
            return self.set_slow_mode(channel, seconds);
        };
        if seconds > super::MAX_SLOW_MODE_SECONDS {
            return Err(ChatError::SlowModeTooLong { seconds });
        }
        self.channel(channel).ok_or(ChatError::NoChannel)?;
        match c
            .append(
                channel,
                &[("slow", json!({ "seconds": seconds }), Value::Null)],
            )
            .await
        {
            Some(_) => {
                info!(channel, seconds, "chat slow mode set (cluster)");
                Ok(())
            }
            None => self.set_slow_mode(channel, seconds),
        }
    }

    /// A ban through the cluster: saved here, then the ban and the deletion of the target's
    /// messages appended in one piece. `None` without Redis (the caller bans locally).
    pub(super) async fn ban_shared(
        &self,
        ch: &Arc<ChatChannel>,
        target: &BanTarget,
    ) -> Result<Option<usize>, ChatError> {
        let Some(c) = self.shared() else {
            return Ok(None);
        };
        self.save_ban(ch, target, true).await?;
        let doomed = ch.messages_of(target);
        let mut events = vec![("ban", json!({}), target_json(target))];
        events.extend(
            doomed
                .iter()
                .map(|id| ("delete", json!({ "id": id }), Value::Null)),
        );
        if c.append(ch.name.as_str(), &events).await.is_none() {
            ch.apply_ban(target, self.cfg.history);
        }
        info!(channel = %ch.name, deleted = doomed.len(), "chat ban added (cluster)");
        Ok(Some(doomed.len()))
    }

    /// An unban through the cluster; `None` without Redis.
    pub(super) async fn unban_shared(
        &self,
        ch: &Arc<ChatChannel>,
        target: &BanTarget,
    ) -> Result<Option<bool>, ChatError> {
        let Some(c) = self.shared() else {
            return Ok(None);
        };
        let stored = self.save_ban(ch, target, false).await?;
        let held = ch.has_ban(target);
        if c.append(
            ch.name.as_str(),
            &[("unban", json!({}), target_json(target))],
        )
        .await
        .is_none()
        {
            ch.apply_unban(target);
        }
        Ok(Some(stored || held))
    }

    async fn save_ban(
        &self,
        ch: &Arc<ChatChannel>,
        target: &BanTarget,
        add: bool,
    ) -> Result<bool, ChatError> {
        let (name, t, file) = (ch.name.to_string(), target.clone(), self.ban_file.clone());
        self.db
            .call(move |conn| {
                let changed = if add {
                    db::bans::add(conn, &name, &t)?
                } else {
                    db::bans::remove(conn, &name, &t)?
                };
                if let Some(f) = file {
                    bans::rewrite(conn, &f);
                }
                Ok(changed)
            })
            .await
            .map_err(|e| unsaved(ch.name.as_str(), "chat ban", e))
    }
}

impl ChatChannel {
    /// Ids of the target's messages still in the history.
    fn messages_of(&self, target: &BanTarget) -> Vec<u64> {
        self.lock().messages_of(target)
    }

    /// The ban in memory, and the end of the address's event streams (the deletions come as
    /// their own events).
    fn add_ban(&self, target: &BanTarget) {
        let mut st = self.lock();
        match target {
            BanTarget::Nick(n) => {
                st.bans.nicks.insert(n.clone());
            }
            BanTarget::Address(a) => {
                st.bans.addresses.insert(*a);
                let _ = self.events.send(super::Ring::Kick(*a));
            }
            BanTarget::Identity(i) => {
                st.bans.identities.insert(i.clone());
            }
        }
    }

    fn has_ban(&self, target: &BanTarget) -> bool {
        let st = self.lock();
        match target {
            BanTarget::Nick(n) => st.bans.nicks.contains(n),
            BanTarget::Address(a) => st.bans.addresses.contains(a),
            BanTarget::Identity(i) => st.bans.identities.contains(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_targets_travel_whole() {
        for t in [
            BanTarget::Nick("bob".into()),
            BanTarget::Address("10.0.0.7".parse().unwrap()),
            BanTarget::Identity("mastodon:https://h/@a".into()),
        ] {
            assert_eq!(target_of(&target_json(&t)), Some(t));
        }
    }
}
