//! The debate in a cluster (`cluster.redis_url` set): every change is an event of the
//! channel's Redis stream, applied on every node (this one too) in stream order.
//!
//! **Where the state is.** The Redis stream is the one order of changes; each node's memory
//! and database are copies made by applying it: [`Debate::apply_shared`], called by the
//! cluster's reader for `q.ask`, `q.vote`, `q.state`, `q.timer` and for `live` / `offline`
//! (which decide the broadcast questions belong to). Applying is deterministic: it depends
//! only on the state the earlier events made and on the event itself (times are the events'
//! ids, which are the cluster's microseconds), so every node ends with the same questions,
//! votes, pin and timer, under the same ids. A question's id is the id of its `q.ask` event.
//! No node is special: a channel may be live nowhere (questions asked before the show), or
//! move from node to node (takeovers), and the debate goes on.
//!
//! **Requests.** The node that takes a request checks it as a single node does (text, nick,
//! bans, a viewer's pace, the question exists and takes votes), appends the change, waits (at
//! most [`APPLY_WAIT`]) until it has come back through Redis and been applied here, and
//! answers from that. Conflicts are settled by the order: two admins pinning at once on two
//! nodes leave the later pin; a viewer voting twice on two nodes is counted once.
//!
//! **Database.** Each node writes what it applies to its own database (one writer task,
//! batched, in order): its restarts, and the replays, find the questions there. Its rows
//! follow the stream by a few milliseconds: in a cluster the change is durable once in Redis.
//!
//! **Events to pages.** `question`, `pinned` and `timer` frames take the id of the event that
//! made them (several frames of one change share it). Vote counts stay coalesced on each
//! node and go out under the last shared id, as the viewer counts do. While Redis is lost the
//! debate works per node as a single node does, and those changes stay on that node.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::queue::{apply_changes, changes_for, set_timer_in};
use super::{
    rows, Debate, DebateChannel, Question, QuestionError, QuestionRow, QuestionState, QuestionView,
    Timer, TimerView, VOTE_BATCH,
};
use crate::bus::Lifecycle;
use crate::chat::now_rfc3339;
use crate::cluster::{Cluster, Event};
use crate::config::MAX_TIMER_SECONDS;
use crate::db::Db;
use crate::identity::Identity;

/// How long a request waits for its change to come back from Redis before it answers with
/// what it has (the change is in Redis: every node applies it when it reads it).
pub const APPLY_WAIT: Duration = Duration::from_secs(5);

/// One change to this node's copy of the debate in its database.
pub(super) enum Replica {
    Insert(Box<QuestionRow>),
    State(u64, QuestionState),
    Broadcast(u64, String),
    Vote(u64, String, bool),
}

/// The replica queue overflowed (logged once).
static REPLICA_FULL: AtomicBool = AtomicBool::new(false);

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Debate {
    /// Waits until the channel's debate event `id` has been applied on this node.
    async fn applied(&self, dc: &DebateChannel, id: u64) -> bool {
        let mut rx = dc.applied.subscribe();
        let ok = matches!(
            tokio::time::timeout(APPLY_WAIT, rx.wait_for(|v| *v >= id)).await,
            Ok(Ok(_))
        );
        if !ok {
            warn!(channel = %dc.name, id, "a debate change sent to Redis has not come back yet: answering without it");
        }
        ok
    }

    /// Appends one debate event; `None` when Redis is lost (the caller goes on alone).
    async fn append(
        &self,
        c: &Cluster,
        dc: &DebateChannel,
        kind: &str,
        data: Value,
        meta: Value,
    ) -> Option<u64> {
        c.append(&dc.name, &[(kind, data, meta)])
            .await?
            .first()
            .copied()
    }

    /// [`Debate::ask`] through the cluster, once checked here; `None` when Redis is lost.
    pub(super) async fn ask_shared(
        &self,
        c: &Cluster,
        dc: &Arc<DebateChannel>,
        key: &str,
        nick: &str,
        text: &str,
        viewer: &super::Viewer<'_>,
    ) -> Option<Result<QuestionView, QuestionError>> {
        let asked_at = now_rfc3339(Utc::now());
        let data =
            json!({"text": text, "nick": nick, "author": viewer.identity, "asked_at": asked_at});
        let id = self
            .append(c, dc, "q.ask", data, json!({ "asker": key }))
            .await?;
        self.applied(dc, id).await;
        let view = dc.lock().questions.get(&id).map(Question::view);
        info!(channel = %dc.name, id, "question asked (cluster)");
        Some(Ok(view.unwrap_or_else(|| QuestionView {
            id,
            text: text.to_string(),
            author: viewer.identity.cloned(),
            nick: nick.to_string(),
            votes: 0,
            state: QuestionState::Open,
            asked_at,
            broadcast: None,
        })))
    }

    /// [`Debate::vote`] through the cluster; `None` when Redis is lost.
    pub(super) async fn vote_shared(
        &self,
        c: &Cluster,
        dc: &Arc<DebateChannel>,
        key: &str,
        id: u64,
        add: bool,
    ) -> Option<Result<usize, QuestionError>> {
        {
            let st = dc.lock();
            let Some(q) = st.questions.get(&id) else {
                return Some(Err(QuestionError::NoSuchQuestion { id }));
            };
            if q.state.is_closed() {
                return Some(Err(QuestionError::Closed {
                    state: q.state.as_str(),
                }));
            }
            if q.voters.contains(key) == add {
                return Some(Ok(q.voters.len()));
            }
        }
        let meta = json!({"voter": key, "add": add});
        let eid = self
            .append(c, dc, "q.vote", json!({ "id": id }), meta)
            .await?;
        self.applied(dc, eid).await;
        let votes = dc.lock().questions.get(&id).map_or(0, |q| q.voters.len());
        Some(Ok(votes))
    }

    /// [`Debate::set_state`] through the cluster (under the channel's admin lock); `None`
    /// when Redis is lost.
    pub(super) async fn set_state_shared(
        &self,
        c: &Cluster,
        dc: &Arc<DebateChannel>,
        id: u64,
        to: QuestionState,
    ) -> Option<Result<QuestionView, QuestionError>> {
        if !dc.lock().questions.contains_key(&id) {
            return Some(Err(QuestionError::NoSuchQuestion { id }));
        }
        let data = json!({"id": id, "state": to.as_str()});
        let eid = self.append(c, dc, "q.state", data, Value::Null).await?;
        self.applied(dc, eid).await;
        info!(channel = %dc.name, id, state = to.as_str(), "question moved (cluster)");
        let view = dc.lock().questions.get(&id).map(Question::view);
        Some(view.ok_or(QuestionError::NoSuchQuestion { id }))
    }

    /// [`Debate::set_timer`] through the cluster: the deadline is decided here, so every node
    /// shows the same; `None` when Redis is lost.
    pub(super) async fn set_timer_shared(
        &self,
        c: &Cluster,
        dc: &Arc<DebateChannel>,
        seconds: u64,
        ends_at: DateTime<Utc>,
    ) -> Option<Result<Option<TimerView>, QuestionError>> {
        let data = json!({"seconds": seconds, "ends_at": now_rfc3339(ends_at)});
        let eid = self.append(c, dc, "q.timer", data, Value::Null).await?;
        self.applied(dc, eid).await;
        info!(channel = %dc.name, seconds, "speaking timer set (cluster)");
        Some(Ok(dc.lock().timer.as_ref().map(Timer::view)))
    }

    /// A go-live or an end of this node's while Redis is lost: as a single node.
    pub async fn local_lifecycle(&self, ev: &Lifecycle) {
        match ev {
            Lifecycle::Live {
                channel,
                started_at,
            } => self.went_live(channel.as_str(), *started_at).await,
            Lifecycle::Offline { channel } => self.went_offline(channel.as_str()),
        }
    }

    /// One event of the channel's Redis stream, on every node in stream order: the debate's
    /// own kinds (`q.*`), and `live` / `offline`. Other kinds are not the debate's.
    pub fn apply_shared(self: &Arc<Self>, channel: &str, ev: &Event) {
        let Ok(dc) = self.channel(channel) else {
            return;
        };
        match ev.kind.as_str() {
            "q.ask" => self.apply_ask(&dc, ev),
            "q.vote" => self.apply_vote(&dc, ev),
            "q.state" => self.apply_state(&dc, ev),
            "q.timer" => self.apply_timer(&dc, ev),
            "live" => self.apply_live(&dc, ev),
            "offline" => {
                let mut st = dc.lock();
                st.live = false;
                st.offline_since = Some(Instant::now());
                st.offline_id = Some(ev.id);
            }
            _ => return,
        }
        dc.applied.send_if_modified(|v| {
            let newer = ev.id > *v;
            if newer {
                *v = ev.id;
            }
            newer
        });
    }

    /// A frame under the event's id, kept in the chat history. Called with the debate
    /// channel's lock held (the chat channel's nests inside it).
    fn emit_at(&self, channel: &str, id: u64, event: &str, data: &Value) {
        if let Some(ch) = self.chat.channel(channel) {
            let mut st = ch.lock();
            ch.publish_at(&mut st, self.chat.cfg.history, id, event, data, Some(None));
        }
    }

    fn persist(&self, op: Replica) {
        if self.replica.try_send(op).is_err() && !REPLICA_FULL.swap(true, Ordering::Relaxed) {
            error!("debate: this node's database copy is behind (queue full); memory and the other nodes are right, this node's restart may miss changes");
        }
    }

    fn apply_ask(&self, dc: &Arc<DebateChannel>, ev: &Event) {
        let d = &ev.data;
        let mut st = dc.lock();
        self.chat.seed_shared_id(&dc.name, ev.id);
        // Replayed (a node bootstrapping from the stream after a restart): already here.
        if st.questions.contains_key(&ev.id) {
            return;
        }
        let (Some(text), Some(nick)) = (d["text"].as_str(), d["nick"].as_str()) else {
            return;
        };
        let row = QuestionRow {
            id: ev.id,
            channel: dc.name.clone(),
            broadcast: st.live.then(|| st.session.clone()).flatten(),
            text: text.to_string(),
            nick: nick.to_string(),
            author: serde_json::from_value::<Option<Identity>>(d["author"].clone())
                .ok()
                .flatten(),
            asker: ev.meta["asker"].as_str().unwrap_or_default().to_string(),
            state: QuestionState::Open.as_str().into(),
            asked_at: d["asked_at"].as_str().unwrap_or_default().to_string(),
            voters: Vec::new(),
        };
        self.persist(Replica::Insert(Box::new(row.clone())));
        let q = Question {
            row,
            state: QuestionState::Open,
            before_pin: QuestionState::Open,
            voters: HashSet::new(),
        };
        let data = serde_json::to_value(q.view()).unwrap_or_default();
        self.emit_at(&dc.name, ev.id, "question", &data);
        st.questions.insert(ev.id, q);
        debug!(channel = %dc.name, id = ev.id, node = %ev.node, "question applied");
    }

    fn apply_vote(self: &Arc<Self>, dc: &Arc<DebateChannel>, ev: &Event) {
        let (Some(id), Some(voter)) = (ev.data["id"].as_u64(), ev.meta["voter"].as_str()) else {
            return;
        };
        let add = ev.meta["add"].as_bool().unwrap_or(true);
        let mut st = dc.lock();
        self.chat.seed_shared_id(&dc.name, ev.id);
        let Some(q) = st.questions.get_mut(&id) else {
            return;
        };
        // Closed meanwhile (by an event before this one): no votes, on every node alike.
        if q.state.is_closed() {
            return;
        }
        let changed = if add {
            q.voters.insert(voter.to_string())
        } else {
            q.voters.remove(voter)
        };
        if changed {
            self.persist(Replica::Vote(id, voter.to_string(), add));
            self.touch(dc, &mut st, id);
        }
    }

    fn apply_state(&self, dc: &Arc<DebateChannel>, ev: &Event) {
        let id = ev.data["id"].as_u64();
        let to = ev.data["state"].as_str().and_then(QuestionState::parse);
        let (Some(id), Some(to)) = (id, to) else {
            return;
        };
        let mut st = dc.lock();
        self.chat.seed_shared_id(&dc.name, ev.id);
        // From this node's state, which every node shares at this point of the stream.
        let Ok(changes) = changes_for(&st, id, to) else {
            return;
        };
        for (qid, s) in &changes {
            self.persist(Replica::State(*qid, *s));
        }
        let pin_moved = apply_changes(&mut st, &changes);
        for (qid, _) in &changes {
            if let Some(q) = st.questions.get(qid) {
                let data = serde_json::to_value(q.view()).unwrap_or_default();
                self.emit_at(&dc.name, ev.id, "question", &data);
            }
        }
        if pin_moved {
            let data = self.pinned_data(&st);
            self.emit_at(&dc.name, ev.id, "pinned", &data);
            // Every node's recorder hears the pin, wherever it was made.
            self.tell_pinned(&dc.name, &st);
        }
    }

    fn apply_timer(&self, dc: &Arc<DebateChannel>, ev: &Event) {
        let seconds = ev.data["seconds"]
            .as_u64()
            .unwrap_or(0)
            .min(MAX_TIMER_SECONDS);
        let ends_at = time_of(&ev.data["ends_at"]).unwrap_or_else(Utc::now);
        let mut st = dc.lock();
        let (_, data) = set_timer_in(&mut st, seconds, ends_at);
        self.emit_at(&dc.name, ev.id, "timer", &data);
    }

    /// [`Debate::went_live`] as every node applies it: a go-live within
    /// `announce.grace_seconds` of the last `offline` (by the events' ids, the cluster's
    /// clock) continues the broadcast, else a new one starts.
    fn apply_live(&self, dc: &Arc<DebateChannel>, ev: &Event) {
        let Some(started_at) = time_of(&ev.data["started_at"]) else {
            return;
        };
        let grace = self.grace.as_micros() as u64;
        let mut st = dc.lock();
        let resumed = st.live
            || st
                .offline_id
                .is_some_and(|o| ev.id.saturating_sub(o) <= grace);
        let (session, fresh) = match (&st.session, resumed) {
            (Some(s), true) => (s.clone(), false),
            _ => (now_rfc3339(started_at), true),
        };
        let pending: Vec<u64> = st
            .questions
            .iter()
            .filter(|(_, q)| q.row.broadcast.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in &pending {
            if let Some(q) = st.questions.get_mut(id) {
                q.row.broadcast = Some(session.clone());
            }
            self.persist(Replica::Broadcast(*id, session.clone()));
        }
        st.live = true;
        st.offline_since = None;
        st.session = Some(session.clone());
        if fresh {
            let (_, data) = self.new_broadcast(&dc.name, &mut st, &session);
            self.emit_at(&dc.name, ev.id, "pinned", &data);
            info!(channel = %dc.name, broadcast = %session, joined = pending.len(), "debate: a new broadcast (cluster)");
        } else {
            for id in &pending {
                if let Some(q) = st.questions.get(id) {
                    let data = serde_json::to_value(q.view()).unwrap_or_default();
                    self.emit_at(&dc.name, ev.id, "question", &data);
                }
            }
        }
    }
}

/// Writes what this node applied from the stream to its database, in order, as many changes
/// as are waiting in one transaction. A change that does not fit (a vote for a question this
/// node never had) is skipped and counted; the others go on.
pub(super) async fn replica_writer(db: Db, mut rx: mpsc::Receiver<Replica>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < VOTE_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let saved = db
            .write(move |tx| {
                let mut skipped = 0;
                for op in &batch {
                    let r = match op {
                        Replica::Insert(row) => rows::insert_as(tx, row).map(drop),
                        Replica::State(id, s) => rows::set_state(tx, *id, s.as_str()).map(drop),
                        Replica::Broadcast(id, b) => rows::set_broadcast(tx, *id, b).map(drop),
                        Replica::Vote(id, v, add) => rows::vote(tx, *id, v, *add).map(drop),
                    };
                    if r.is_err() {
                        skipped += 1;
                    }
                }
                Ok(skipped)
            })
            .await;
        match saved {
            Ok(0) => {}
            Ok(skipped) => warn!(
                skipped,
                of = n,
                "debate: changes from the cluster not kept in this node's database"
            ),
            Err(e) => {
                error!(error = %e, changes = n, "debate: changes from the cluster not saved to this node's database")
            }
        }
    }
}
