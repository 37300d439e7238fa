//! The channel registry and the counts: the lifecycle task turns this node's go-lives and ends
//! into claims and releases ([`scripts`]); the heartbeat, every second, renews this node's
//! entries (and stops a local publisher another node took over), writes its viewer counts,
//! reads the registry and the other nodes' counts, and marks offline a channel whose origin
//! stopped beating (one node does it: the script is atomic).
//!
//! [`scripts`]: super::scripts

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use redis::AsyncCommands;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument};

use super::{lock, scripts, Cluster, Origin, HEARTBEAT_INTERVAL};
use crate::bus::{ChannelName, Lifecycle};

impl Cluster {
    fn ttl_ms(&self) -> u64 {
        self.cfg.heartbeat_ttl_seconds * 1000
    }

    fn my_origin(&self, started_at: chrono::DateTime<Utc>) -> String {
        let o = Origin {
            node: self.node.clone(),
            url: self.url.clone(),
            started_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        serde_json::to_string(&o).unwrap_or_default()
    }

    /// A local go-live: claims the channel. `Ok(true)` for a new go-live in the cluster.
    async fn claim(&self, ch: &str, started_at: chrono::DateTime<Utc>) -> redis::RedisResult<bool> {
        let mut conn = self.conn().await?;
        let data = serde_json::json!({
            "channel": ch,
            "started_at": started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        let n: i64 = scripts::CLAIM
            .key(self.keys.origin(ch))
            .key(self.keys.state(ch))
            .key(self.keys.events(ch))
            .key(self.keys.seq(ch))
            .arg(self.maxlen)
            .arg(&self.node)
            .arg(self.my_origin(started_at))
            .arg(self.ttl_ms())
            .arg(data.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Runs [`scripts::RELEASE`] or [`scripts::EXPIRE`]: `Ok(true)` if this node marked the
    /// channel offline.
    async fn end(&self, script: &redis::Script, ch: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn().await?;
        let n: i64 = script
            .key(self.keys.origin(ch))
            .key(self.keys.state(ch))
            .key(self.keys.events(ch))
            .key(self.keys.seq(ch))
            .arg(self.maxlen)
            .arg(&self.node)
            .arg(serde_json::json!({ "channel": ch }).to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// Tells the announcer (go-lives and ends of the cluster, each on one node).
    fn announce(&self, ev: Lifecycle) {
        let _ = self.announce.send(ev);
    }

    /// A local lifecycle event, with Redis: claim or release. Without: what a single node does.
    async fn on_local(&self, ev: Lifecycle) {
        let result = match &ev {
            Lifecycle::Live {
                channel,
                started_at,
            } => self
                .claim(channel.as_str(), *started_at)
                .await
                .inspect(|&new| {
                    if !new {
                        info!(channel = %channel, "took the channel over from another node: not a new go-live");
                    }
                }),
            Lifecycle::Offline { channel } => self.end(&scripts::RELEASE, channel.as_str()).await,
        };
        match result {
            Ok(tell) => {
                self.note(Ok(()));
                if tell {
                    self.announce(ev);
                }
            }
            Err(e) => {
                self.note(Err(&e));
                // Alone: this node's viewers hear it, and the announcer too.
                if let Some(chat) = self.chat() {
                    chat.lifecycle(&ev);
                }
                if let Some(d) = self.debate() {
                    d.local_lifecycle(&ev).await;
                }
                self.announce(ev);
            }
        }
    }

    /// One heartbeat; any Redis failure ends it (the next one tries again).
    async fn beat(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        let now_ms = Utc::now().timestamp_millis();
        let ttl = self.ttl_ms();
        let channels = self.bus.all();
        // This node's viewers, and that it is alive.
        let mine: HashMap<String, u64> = match self.chat() {
            Some(chat) => chat.local_viewers().into_iter().collect(),
            None => HashMap::new(),
        };
        let _: () = redis::pipe()
            .zadd(self.keys.nodes(), &self.node, now_ms)
            .ignore()
            .zrembyscore(self.keys.nodes(), "-inf", now_ms - ttl as i64)
            .ignore()
            .pset_ex(
                self.keys.viewers(&self.node),
                serde_json::to_string(&mine).unwrap_or_default(),
                ttl,
            )
            .ignore()
            .query_async(&mut conn)
            .await?;
        // Our live channels: renew, or stop if another node took over.
        for b in &channels {
            let Some(p) = b.publisher() else { continue };
            if Utc::now() - p.started_at < chrono::Duration::seconds(2) {
                // Just published: its claim (the lifecycle task) may not have landed yet, and
                // the entry it replaces is not a takeover of this one.
                continue;
            }
            let ours: i64 = scripts::HEARTBEAT
                .key(self.keys.origin(b.name.as_str()))
                .key(self.keys.state(b.name.as_str()))
                .arg(&self.node)
                .arg(self.my_origin(p.live_since))
                .arg(ttl)
                .invoke_async(&mut conn)
                .await?;
            if ours == 0 && b.kick() {
                info!(channel = %b.name, "the registry names another node for this channel: local publisher stopped");
            }
        }
        // The registry as it is.
        let names: Vec<&ChannelName> = channels.iter().map(|b| &b.name).collect();
        let origin_keys: Vec<String> = names.iter().map(|n| self.keys.origin(n.as_str())).collect();
        let origins: Vec<Option<String>> = if origin_keys.is_empty() {
            Vec::new()
        } else {
            conn.mget(&origin_keys).await?
        };
        let mut view = HashMap::new();
        for (n, o) in names.iter().zip(origins) {
            if let Some(o) = o.and_then(|s| serde_json::from_str::<Origin>(&s).ok()) {
                view.insert(n.to_string(), o);
            }
        }
        // Channels whose origin stopped beating: offline (one node wins the script).
        for b in &channels {
            let ch = b.name.as_str();
            if b.publisher().is_none() && !view.contains_key(ch) {
                let was_live = lock(&self.origins).contains_key(ch);
                if was_live && self.end(&scripts::EXPIRE, ch).await? {
                    info!(
                        channel = ch,
                        "the channel's origin node stopped its heartbeat: offline"
                    );
                    self.announce(Lifecycle::Offline {
                        channel: b.name.clone(),
                    });
                }
            }
        }
        *lock(&self.origins) = view;
        // Viewers of the other live nodes, summed.
        let nodes: Vec<String> = conn
            .zrangebyscore(self.keys.nodes(), now_ms - ttl as i64, "+inf")
            .await?;
        let counts: Vec<Option<String>> = if nodes.is_empty() {
            Vec::new()
        } else {
            // The others' counts: this node's own is added fresh when asked.
            let keys: Vec<String> = nodes
                .iter()
                .filter(|n| **n != self.node)
                .map(|n| self.keys.viewers(n))
                .collect();
            if keys.is_empty() {
                Vec::new()
            } else {
                conn.mget(&keys).await?
            }
        };
        let mut totals: HashMap<String, u64> = HashMap::new();
        for c in counts.into_iter().flatten() {
            if let Ok(m) = serde_json::from_str::<HashMap<String, u64>>(&c) {
                for (ch, n) in m {
                    *totals.entry(ch).or_default() += n;
                }
            }
        }
        *lock(&self.viewers) = totals;
        Ok(())
    }
}

#[instrument(skip_all)]
pub(super) async fn heartbeat(cluster: Arc<Cluster>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => break,
        }
        let r = tokio::select! {
            r = cluster.beat() => r,
            _ = cancel.cancelled() => break,
        };
        cluster.note(r.as_ref().map(|_| ()));
    }
    // Leaving: this node's channels end at once for the others (best effort).
    for b in cluster.bus.all() {
        if b.publisher().is_some() {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                cluster.end(&scripts::RELEASE, b.name.as_str()),
            )
            .await;
        }
    }
}

#[instrument(skip_all)]
pub(super) async fn lifecycle(
    cluster: Arc<Cluster>,
    mut rx: broadcast::Receiver<Lifecycle>,
    cancel: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = cancel.cancelled() => return,
        };
        match ev {
            Ok(ev) => cluster.on_local(ev).await,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // The heartbeat puts the registry right within a second.
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
