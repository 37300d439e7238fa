//! The event reader: one blocking `XREAD` over every channel's stream, on a connection of its
//! own (a blocking read would hold up commands on a shared one). Each entry goes, in stream
//! order, to `Chat::apply_shared` and, for `live` / `origin` / `offline`, to the registry view.
//! A channel seen for the first time is bootstrapped from the tail of its stream (the history
//! a new or restarted node shows); after a loss of Redis, reading resumes after the last entry
//! applied, so nothing another node appended meanwhile is missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{lock, Cluster, Event, Origin};

/// How long one `XREAD` blocks; the channel list is read again after each.
const BLOCK: Duration = Duration::from_secs(1);
/// Wait before trying again after Redis failed.
const RETRY: Duration = Duration::from_millis(500);

/// Parses a stream entry (`{id}-1`, fields `k`, `d`, `m`, `n`); `None` for one that is not ours.
pub(super) fn parse(entry: &StreamId) -> Option<Event> {
    let id = entry.id.split('-').next()?.parse::<u64>().ok()?;
    let kind: String = entry.get("k")?;
    let data: String = entry.get("d").unwrap_or_default();
    let meta: String = entry.get("m").unwrap_or_default();
    let node: String = entry.get("n").unwrap_or_default();
    let json = |s: &str| {
        if s.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
        }
    };
    Some(Event {
        id,
        kind,
        data: json(&data),
        meta: json(&meta),
        node,
    })
}

pub(super) async fn reader(cluster: Arc<Cluster>, cancel: CancellationToken) {
    // Per channel, the id of the last entry applied.
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut conn = None;
    while !cancel.is_cancelled() {
        let result = tokio::select! {
            r = read_once(&cluster, &mut conn, &mut last) => r,
            _ = cancel.cancelled() => return,
        };
        if let Err(e) = result {
            cluster.note(Err(&e));
            if e.is_unrecoverable_error() || e.is_connection_dropped() {
                conn = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }
}

async fn read_once(
    cluster: &Cluster,
    conn: &mut Option<redis::aio::ConnectionManager>,
    last: &mut HashMap<String, u64>,
) -> redis::RedisResult<()> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(cluster.connect(BLOCK + super::COMMAND_TIMEOUT).await?),
    };
    let channels: Vec<String> = cluster
        .bus
        .all()
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    if channels.is_empty() {
        tokio::time::sleep(BLOCK).await;
        return Ok(());
    }
    for ch in &channels {
        if !last.contains_key(ch) {
            let from = bootstrap(cluster, c, ch).await?;
            last.insert(ch.clone(), from);
        }
    }
    let keys: Vec<String> = channels.iter().map(|c| cluster.keys.events(c)).collect();
    let ids: Vec<String> = channels
        .iter()
        .map(|c| format!("{}-1", last.get(c).copied().unwrap_or(0)))
        .collect();
    let opts = StreamReadOptions::default()
        .count(500)
        .block(BLOCK.as_millis() as usize);
    let reply: Option<StreamReadReply> = c.xread_options(&keys, &ids, &opts).await?;
    cluster.note(Ok(()));
    let Some(reply) = reply else { return Ok(()) };
    for key in reply.keys {
        let Some(i) = keys.iter().position(|k| *k == key.key) else {
            continue;
        };
        let ch = &channels[i];
        for entry in &key.ids {
            if let Some(ev) = parse(entry) {
                last.insert(ch.clone(), ev.id);
                apply(cluster, ch, &ev);
            }
        }
    }
    Ok(())
}

/// Applies the tail of a channel's stream (the shared history) and returns the id to read on
/// from.
async fn bootstrap(
    cluster: &Cluster,
    c: &mut redis::aio::ConnectionManager,
    ch: &str,
) -> redis::RedisResult<u64> {
    let reply: StreamRangeReply = c
        .xrevrange_count(cluster.keys.events(ch), "+", "-", cluster.maxlen)
        .await?;
    let seq: Option<u64> = c.get(cluster.keys.seq(ch)).await?;
    let bans: Vec<String> = c.smembers(cluster.keys.bans(ch)).await?;
    let slow: Option<String> = c.get(cluster.keys.slow(ch)).await?;
    let mut from = 0;
    for entry in reply.ids.iter().rev() {
        if let Some(ev) = parse(entry) {
            from = ev.id;
            apply(cluster, ch, &ev);
        }
    }
    // The bans and slow mode in force, whose events may have left the stream.
    let state = bans
        .iter()
        .map(|b| ("ban", "{}", b.as_str()))
        .chain(slow.as_deref().map(|s| ("slow", s, "")));
    for (kind, data, meta) in state {
        let json = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
        let ev = Event {
            id: 0,
            kind: kind.to_string(),
            data: json(data),
            meta: json(meta),
            node: String::new(),
        };
        apply(cluster, ch, &ev);
    }
    if let Some(chat) = cluster.chat() {
        chat.seed_shared_id(ch, seq.unwrap_or(from).max(from));
    }
    debug!(
        channel = ch,
        entries = reply.ids.len(),
        "cluster stream bootstrapped"
    );
    Ok(from)
}

/// One entry: the registry view first (a takeover stops the local publisher), then the chat.
fn apply(cluster: &Cluster, ch: &str, ev: &Event) {
    match ev.kind.as_str() {
        "live" | "origin" => {
            if let Ok(o) = serde_json::from_value::<Origin>(ev.meta.clone()) {
                lock(&cluster.origins).insert(ch.to_string(), o);
            }
            if ev.node != cluster.node {
                // Another node's later publish of this channel: the registry says it wins.
                // (Ids are microseconds: an old entry replayed cannot stop a newer publisher.)
                if let Some(b) = cluster.bus.get(ch) {
                    let older = b
                        .publisher()
                        .is_some_and(|p| (p.started_at.timestamp_micros().max(0) as u64) < ev.id);
                    if older && b.kick() {
                        tracing::info!(channel = ch, node = %ev.node, "channel taken over by another node: local publisher stopped");
                    }
                }
            }
        }
        "offline" => {
            lock(&cluster.origins).remove(ch);
        }
        _ => {}
    }
    if ev.kind.starts_with("q.") {
        // The debate's own: nothing for the chat to frame.
        if let Some(d) = cluster.debate() {
            d.apply_shared(ch, ev);
        }
        return;
    }
    if let Some(chat) = cluster.chat() {
        chat.apply_shared(ch, ev);
    }
    if matches!(ev.kind.as_str(), "live" | "offline") {
        if let Some(d) = cluster.debate() {
            d.apply_shared(ch, ev);
        }
    }
}
