//! Which broadcast the questions belong to. A question asked while the channel is live is
//! kept with that broadcast (its `started_at`); one asked while offline waits for the next one
//! (asked before the show). Going live again within `announce.grace_seconds` of going offline
//! (a broadcaster reconnecting, or the server restarting mid-show) continues the same
//! broadcast; later, a new one starts: the previous broadcast's questions leave the live list
//! (they stay in the database, with their broadcast, for the replays and exports) and pages
//! are told to reload with a `pinned` event carrying `new_broadcast`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::{Debate, QuestionRow};
use crate::bus::Lifecycle;
use crate::chat::now_rfc3339;
use crate::db::questions as rows;

/// The stored questions a channel starts with: those of its latest broadcast and those asked
/// after it (waiting for the next), oldest first; and that broadcast.
pub(super) fn current(
    rows: Vec<QuestionRow>,
) -> HashMap<String, (Option<String>, Vec<QuestionRow>)> {
    let mut by_channel: HashMap<String, Vec<QuestionRow>> = HashMap::new();
    for r in rows {
        by_channel.entry(r.channel.clone()).or_default().push(r);
    }
    by_channel
        .into_iter()
        .map(|(c, rows)| {
            // RFC 3339 UTC with milliseconds, as we write them: text order is time order.
            let latest = rows.iter().filter_map(|r| r.broadcast.clone()).max();
            let keep = rows
                .into_iter()
                .filter(|r| r.broadcast.is_none() || r.broadcast == latest)
                .collect();
            (c, (latest, keep))
        })
        .collect()
}

impl Debate {
    /// `channel` went live at `started_at`: continues its broadcast (within the grace) or
    /// starts a new one; questions asked before it join it.
    pub(super) async fn went_live(&self, channel: &str, started_at: DateTime<Utc>) {
        let Ok(dc) = self.channel(channel) else {
            return;
        };
        let _one = dc.admin.lock().await;
        let (session, fresh, pending) = {
            let st = dc.lock();
            let resumed = st.live || st.offline_since.is_some_and(|t| t.elapsed() <= self.grace);
            match (&st.session, resumed) {
                (Some(s), true) => (s.clone(), false, ids(&st, |b| b.is_none())),
                _ => (now_rfc3339(started_at), true, ids(&st, |b| b.is_none())),
            }
        };
        let (s, p) = (session.clone(), pending.clone());
        let saved = self
            .db
            .write(move |tx| {
                for id in &p {
                    rows::set_broadcast(tx, *id, &s)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = saved {
            // The questions stay waiting (shown, untagged); the next go-live tags them.
            error!(channel, error = %e, "questions' broadcast not saved to the database");
        }
        let mut st = dc.lock();
        st.live = true;
        st.offline_since = None;
        st.session = Some(session.clone());
        for id in &pending {
            if let Some(q) = st.questions.get_mut(id) {
                q.row.broadcast = Some(session.clone());
            }
        }
        if fresh {
            let (archived, data) = self.new_broadcast(&dc.name, &mut st, &session);
            self.emit(&dc.name, "pinned", &data);
            info!(channel = %dc.name, broadcast = %session, archived, joined = pending.len(),
                "debate: a new broadcast");
        } else {
            for id in &pending {
                if let Some(q) = st.questions.get(id) {
                    self.emit_question(&dc.name, q);
                }
            }
            debug!(channel = %dc.name, broadcast = %session, "debate: the broadcast goes on");
        }
    }

    /// A new broadcast `session` begins: only its questions stay in memory (the earlier ones
    /// stay in the database), a pin of an earlier one goes, the recorder is told. Returns how
    /// many left memory and the `pinned` event (with `new_broadcast`) for the caller to send
    /// under its id: the node's own, or the cluster stream's.
    pub(super) fn new_broadcast(
        &self,
        channel: &str,
        st: &mut super::DebateState,
        session: &str,
    ) -> (usize, serde_json::Value) {
        let before = st.questions.len();
        st.questions
            .retain(|_, q| q.row.broadcast.as_deref() == Some(session));
        if st.pinned.is_some_and(|p| !st.questions.contains_key(&p)) {
            st.pinned = None;
        }
        st.dirty.clear();
        let mut data = self.pinned_data(st);
        data["new_broadcast"] = serde_json::Value::String(session.to_string());
        self.tell_pinned(channel, st);
        (before - st.questions.len(), data)
    }

    /// `channel` went offline: its broadcast may still continue within the grace.
    pub(super) fn went_offline(&self, channel: &str) {
        if let Ok(dc) = self.channel(channel) {
            let mut st = dc.lock();
            st.live = false;
            st.offline_since = Some(Instant::now());
        }
    }
}

/// Questions whose broadcast matches `f`.
fn ids(st: &super::DebateState, f: impl Fn(Option<&str>) -> bool) -> Vec<u64> {
    st.questions
        .iter()
        .filter(|(_, q)| f(q.row.broadcast.as_deref()))
        .map(|(id, _)| *id)
        .collect()
}

/// Follows the bus's go-live and offline events for [`Debate::went_live`] and
/// [`Debate::went_offline`]; after falling behind, takes every channel's state as it is.
pub(super) async fn lifecycle_task(
    debate: Arc<Debate>,
    mut rx: broadcast::Receiver<Lifecycle>,
    cancel: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = cancel.cancelled() => return,
        };
        match ev {
            // In a cluster, go-lives and ends come from Redis in stream order (`shared`), or
            // from the cluster itself while Redis is lost, so that every node decides alike.
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_))
                if debate.chat.cluster.get().is_some() => {}
            Ok(Lifecycle::Live {
                channel,
                started_at,
            }) => debate.went_live(channel.as_str(), started_at).await,
            Ok(Lifecycle::Offline { channel }) => debate.went_offline(channel.as_str()),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                for c in debate.chat.bus.all() {
                    match c.publisher() {
                        Some(p) => debate.went_live(c.name.as_str(), p.live_since).await,
                        None => debate.went_offline(c.name.as_str()),
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, channel: &str, broadcast: Option<&str>) -> QuestionRow {
        QuestionRow {
            id,
            channel: channel.into(),
            broadcast: broadcast.map(String::from),
            text: String::new(),
            nick: String::new(),
            author: None,
            asker: String::new(),
            state: "open".into(),
            asked_at: String::new(),
            voters: Vec::new(),
        }
    }

    #[test]
    fn a_channel_starts_with_its_latest_broadcast_and_the_questions_after_it() {
        let a = "2026-12-01T18:00:00.000Z";
        let b = "2026-12-02T18:00:00.000Z";
        let got = current(vec![
            row(1, "alice", Some(a)),
            row(2, "alice", Some(b)),
            row(3, "alice", None),
            row(4, "bob", Some(a)),
        ]);
        let (latest, rows) = &got["alice"];
        assert_eq!(latest.as_deref(), Some(b));
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(got["bob"].1.len(), 1);
    }
}
