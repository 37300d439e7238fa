//! Debate mode: viewers' questions with votes, the broadcaster's queue (shortlist, pin one at
//! a time, answered, dismissed, reopen) and a speaking timer.
//!
//! `http::questions` calls [`Debate::ask`], [`Debate::vote`], [`Debate::list`] for viewers and
//! [`Debate::set_state`], [`Debate::set_timer`] for the channel-scoped admin routes. Questions
//! follow the chat's rules (word filter, nick rules, bans, names of signed-in viewers) and
//! their events (`question`, `pinned`, `timer`) go through the channel's chat ring: one id
//! sequence with chat, kept in the chat history, so `Last-Event-ID` resumes them like chat
//! (all but the coalesced vote counts, which pages get back from the listing on reconnect).
//!
//! **Who a viewer is.** The signed-in identity (`provider:id`) when there is one, else the
//! client address as the chat counts it (behind `chat.trusted_proxies`), stored hashed. One
//! vote per viewer and question; one question per `debate.seconds_between_questions`.
//!
//! **Durability.** Every change is committed to the database (`db::questions`) before the
//! caller is answered. Asks and state changes write first, then change memory and publish;
//! votes change memory at once (under the channel lock, which orders them) and queue their
//! row for one writer task that commits whatever is queued in one transaction (group commit:
//! 1,000 votes a second cost a few fsyncs, not 1,000), answering each voter after its batch.
//!
//! **Coalescing.** A vote does not publish by itself: it marks its question dirty, and dirty
//! questions go out as `question` events, [`VOTE_EVENTS_PER_FLUSH`] (dirty longest first) every
//! [`VOTE_EVENT_INTERVAL`] per channel at most (the first at once, the rest at the end of the
//! interval), however fast votes come and on however many questions.
//!
//! **Pins for the replay.** Whoever records the shows is told every change of a channel's
//! pinned question (`pin_hook.rs`, [`Debate::on_pinned`]).
//!
//! **Timer.** Only its deadline is sent (`ends_at`, with the server's `now` so pages correct
//! their clock); pages count down by themselves and show "time's up". It lives in memory.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use super::moderation::{clean_nick, clean_text, retry_after_seconds};
use super::{name_key, now_rfc3339, Chat, ChatError};
use crate::config::{DebateConfig, MAX_TIMER_SECONDS};
use crate::db::questions::{self as rows, QuestionRow};
use crate::db::{Db, DbError};

mod model;
mod pin_hook;
mod queue;
mod session;
mod shared;
mod votes;

pub use model::{
    order, ListedQuestion, Listing, QuestionError, QuestionState, QuestionView, TimerView, Viewer,
};
pub use pin_hook::PinHook;
use queue::{apply_changes, changes_for, set_timer_in};
use shared::{replica_writer, Replica};
use votes::{vote_writer, VoteJob};

/// Vote counts go out at most this often per channel...
pub const VOTE_EVENT_INTERVAL: Duration = Duration::from_millis(250);
/// ...for at most this many questions each time: at most 8 `question` events a second per
/// channel from votes, however many questions get votes and however fast.
pub const VOTE_EVENTS_PER_FLUSH: usize = 2;
/// Votes waiting for the writer before voters are told to retry.
const VOTE_QUEUE: usize = 4096;
/// Votes committed in one transaction at most.
pub(super) const VOTE_BATCH: usize = 1024;
/// The nick of an anonymous question asked without one.
const ANONYMOUS: &str = "anonymous";

struct Question {
    row: QuestionRow,
    state: QuestionState,
    /// What it goes back to when another question is pinned.
    before_pin: QuestionState,
    voters: HashSet<String>,
}

impl Question {
    fn view(&self) -> QuestionView {
        QuestionView {
            id: self.row.id,
            text: self.row.text.clone(),
            author: self.row.author.clone(),
            nick: self.row.nick.clone(),
            votes: self.voters.len(),
            state: self.state,
            asked_at: self.row.asked_at.clone(),
            broadcast: self.row.broadcast.clone(),
        }
    }
}

struct Timer {
    ends_at: chrono::DateTime<Utc>,
    seconds: u64,
}

impl Timer {
    fn view(&self) -> TimerView {
        let now = Utc::now();
        TimerView {
            ends_at: Some(now_rfc3339(self.ends_at)),
            running: now < self.ends_at,
            seconds: self.seconds,
            now: now_rfc3339(now),
        }
    }
}

#[derive(Default)]
struct DebateState {
    questions: BTreeMap<u64, Question>,
    pinned: Option<u64>,
    timer: Option<Timer>,
    /// When each viewer last asked (for `debate.seconds_between_questions`).
    last_asked: HashMap<String, Instant>,
    /// Questions whose votes changed since their last event.
    /// Oldest first.
    dirty: VecDeque<u64>,
    last_flush: Option<Instant>,
    flush_scheduled: bool,
    /// The broadcast new questions belong to while live (`started_at`), see `session`.
    session: Option<String>,
    live: bool,
    /// When it went offline (or the server started): a go-live within the grace continues
    /// the broadcast.
    offline_since: Option<Instant>,
    /// In a cluster: the id (µs, the cluster's clock) of the `offline` event applied last,
    /// so that every node decides a go-live's continuation alike (`shared`).
    offline_id: Option<u64>,
}

/// One channel's debate.
struct DebateChannel {
    name: String,
    /// A std mutex: short sections, no `.await` inside. Events are published under it (the
    /// chat channel's lock nests inside this one, never the other way round), so events go
    /// out in the order of the changes.
    state: Mutex<DebateState>,
    /// Serializes the broadcaster's changes (held across their database write), so two
    /// admins pinning at once cannot leave two questions pinned.
    admin: tokio::sync::Mutex<()>,
    /// In a cluster: the id of the last debate event applied here, for a request waiting
    /// until its own change has come back through Redis (`shared`).
    applied: tokio::sync::watch::Sender<u64>,
}

impl DebateChannel {
    fn lock(&self) -> MutexGuard<'_, DebateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every channel's debate.
pub struct Debate {
    cfg: DebateConfig,
    /// `debate.require_sign_in`, in force only when some sign-in provider is enabled.
    require_sign_in: bool,
    /// `announce.grace_seconds`: going live again this soon continues the broadcast.
    grace: Duration,
    chat: Arc<Chat>,
    db: Db,
    tracker: TaskTracker,
    /// Std mutex, short sections.
    channels: Mutex<HashMap<String, Arc<DebateChannel>>>,
    votes: mpsc::Sender<VoteJob>,
    /// Set once (the recorder): told each change of a pinned question.
    pin_hook: OnceLock<PinHook>,
    /// In a cluster: this node's database copy of the changes applied from Redis.
    replica: mpsc::Sender<Replica>,
}

impl Debate {
    /// Loads each channel's questions of its latest broadcast (and those asked after it),
    /// starts the vote writer and follows the channels going live and offline.
    pub async fn start(
        cfg: DebateConfig,
        require_sign_in: bool,
        grace: Duration,
        chat: Arc<Chat>,
        db: Db,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Arc<Debate>, DbError> {
        let stored = db.call(|c| rows::all(c)).await?;
        let total = stored.len();
        let current = session::current(stored);
        let mut channels: HashMap<String, Arc<DebateChannel>> = HashMap::new();
        let mut shown = 0;
        for (name, (latest, rows)) in current {
            let ch = new_channel(&name);
            {
                // A restart counts as going offline now: a go-live within the grace
                // continues the broadcast.
                let mut st = ch.lock();
                st.session = latest;
                st.offline_since = Some(Instant::now());
            }
            shown += rows.len();
            channels.insert(name, ch);
            rows_into(&channels, rows);
        }
        info!(
            questions = total,
            current = shown,
            "debate questions loaded"
        );
        let (votes, rx) = mpsc::channel(VOTE_QUEUE);
        tracker.spawn(vote_writer(db.clone(), rx));
        let (replica, rx) = mpsc::channel(VOTE_QUEUE);
        tracker.spawn(replica_writer(db.clone(), rx));
        let lifecycle = chat.bus.subscribe_lifecycle();
        let debate = Arc::new(Debate {
            cfg,
            require_sign_in,
            grace,
            chat,
            db,
            tracker: tracker.clone(),
            channels: Mutex::new(channels),
            votes,
            pin_hook: OnceLock::new(),
            replica,
        });
        tracker.spawn(session::lifecycle_task(debate.clone(), lifecycle, cancel));
        Ok(debate)
    }

    /// Whether asking and voting need a signed-in viewer here.
    pub fn requires_sign_in(&self) -> bool {
        self.require_sign_in
    }

    /// The debate of a channel the bus knows.
    fn channel(&self, name: &str) -> Result<Arc<DebateChannel>, QuestionError> {
        let bus = self.chat.bus.get(name).ok_or(ChatError::NoChannel)?;
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .entry(bus.name.to_string())
            .or_insert_with(|| new_channel(bus.name.as_str()))
            .clone())
    }

    /// Publishes one event on the channel's stream (kept in the history for resumes).
    /// Called with the debate channel's lock held.
    fn emit(&self, channel: &str, event: &str, data: &serde_json::Value) {
        if let Some(ch) = self.chat.channel(channel) {
            let mut st = ch.lock();
            ch.publish(&mut st, self.chat.cfg.history, event, data, Some(None));
        }
    }

    fn emit_question(&self, channel: &str, q: &Question) {
        let data = serde_json::to_value(q.view()).unwrap_or_default();
        self.emit(channel, "question", &data);
    }

    /// A question's new vote count: sent, but not kept in the chat history, so a busy vote
    /// cannot push chat out of what a new viewer gets. A page that reconnects reloads the
    /// listing (which has every count); the changes that matter for a resume (new questions,
    /// states, pins, the timer) are kept.
    fn emit_votes(&self, channel: &str, q: &Question) {
        let data = serde_json::to_value(q.view()).unwrap_or_default();
        if let Some(ch) = self.chat.channel(channel) {
            let mut st = ch.lock();
            if self.chat.cluster.get().is_some() {
                // Coalesced on each node: under the last shared id, like the viewer counts,
                // so that no node makes an id the others do not know.
                let id = st.last_id;
                ch.publish_at(&mut st, self.chat.cfg.history, id, "question", &data, None);
            } else {
                ch.publish(&mut st, self.chat.cfg.history, "question", &data, None);
            }
        }
    }

    /// A `pinned` event's data: the id and the whole question (or nulls).
    fn pinned_data(&self, st: &DebateState) -> serde_json::Value {
        let q = st
            .pinned
            .and_then(|id| st.questions.get(&id))
            .map(Question::view);
        serde_json::json!({ "id": st.pinned, "question": q })
    }

    fn emit_pinned(&self, channel: &str, st: &DebateState) {
        let data = self.pinned_data(st);
        self.emit(channel, "pinned", &data);
        self.tell_pinned(channel, st);
    }

    /// Refuses a banned viewer (nick, address or identity, as the chat bans them).
    fn check_bans(
        &self,
        channel: &str,
        v: &Viewer<'_>,
        nick: Option<&str>,
    ) -> Result<(), ChatError> {
        let ch = self.chat.channel(channel).ok_or(ChatError::NoChannel)?;
        let st = ch.lock();
        let banned = st.bans.addresses.contains(&v.addr)
            || v.identity
                .is_some_and(|i| st.bans.identities.contains(&i.key()))
            || nick.is_some_and(|n| st.bans.nicks.contains(&n.to_lowercase()));
        if banned {
            return Err(ChatError::Banned);
        }
        if let (None, Some(n)) = (v.identity, nick) {
            if st.signed_names.contains(&name_key(n)) {
                return Err(ChatError::Invalid {
                    reason:
                        "this name belongs to a signed-in viewer here: pick another nick, or sign in"
                            .into(),
                });
            }
        }
        Ok(())
    }

    /// Asks a question; answers with it once it is stored and published.
    pub async fn ask(
        &self,
        channel: &str,
        viewer: &Viewer<'_>,
        nick: &str,
        text: &str,
    ) -> Result<QuestionView, QuestionError> {
        let dc = self.channel(channel)?;
        let chat = &self.chat.cfg;
        let nick = match viewer.identity {
            Some(a) => a.handle.clone(),
            None if nick.trim().is_empty() => ANONYMOUS.to_string(),
            None => clean_nick(nick, chat.max_nick_chars, &chat.blocked_words)
                .map_err(ChatError::from)?,
        };
        let text = clean_text(text, self.cfg.max_question_chars, &chat.blocked_words)
            .map_err(ChatError::from)?;
        self.check_bans(channel, viewer, Some(&nick))?;
        let key = viewer.key();
        let now = Instant::now();
        let every = Duration::from_secs(self.cfg.seconds_between_questions);
        let broadcast = {
            let mut st = dc.lock();
            if let Some(last) = st.last_asked.get(&key) {
                let next = *last + every;
                if next > now {
                    return Err(ChatError::RateLimited {
                        retry_after: retry_after_seconds(next - now),
                    }
                    .into());
                }
            }
            // Forget viewers free to ask again, then reserve this one's turn now, so that
            // two requests at once cannot both pass.
            st.last_asked
                .retain(|_, t| now.saturating_duration_since(*t) < every);
            st.last_asked.insert(key.clone(), now);
            // Asked while offline: it waits for the next broadcast (see `session`).
            st.live.then(|| st.session.clone()).flatten()
        };
        if let Some(c) = self.chat.shared().cloned() {
            // In a cluster every node (this one too) adds it as it comes back from Redis.
            if let Some(r) = self.ask_shared(&c, &dc, &key, &nick, &text, viewer).await {
                if r.is_err() {
                    dc.lock().last_asked.remove(&key);
                }
                return r;
            }
        }
        let mut row = QuestionRow {
            id: 0,
            channel: dc.name.clone(),
            broadcast,
            text,
            nick,
            author: viewer.identity.cloned(),
            asker: key.clone(),
            state: QuestionState::Open.as_str().into(),
            asked_at: now_rfc3339(Utc::now()),
            voters: Vec::new(),
        };
        let stored = row.clone();
        // A node of a cluster alone (Redis lost) numbers from its clock, as the cluster does.
        let from = self
            .chat
            .cluster
            .get()
            .map(|_| Utc::now().timestamp_micros().max(0) as u64);
        let insert = move |tx: &rusqlite::Transaction<'_>| match from {
            Some(from) => rows::insert_from(tx, &stored, from),
            None => rows::insert(tx, &stored),
        };
        let id = match self.db.write(insert).await {
            Ok(id) => id,
            Err(e) => {
                dc.lock().last_asked.remove(&key);
                return Err(super::unsaved(channel, "question", e).into());
            }
        };
        row.id = id;
        let q = Question {
            row,
            state: QuestionState::Open,
            before_pin: QuestionState::Open,
            voters: HashSet::new(),
        };
        let view = q.view();
        let mut st = dc.lock();
        self.emit_question(&dc.name, &q);
        st.questions.insert(id, q);
        info!(channel = %dc.name, id, "question asked");
        Ok(view)
    }

    /// Moves a question in the queue. Pinning one returns the pinned one (if any) to where
    /// it was; leaving `pinned` clears the pin. Answers with the question once committed.
    pub async fn set_state(
        &self,
        channel: &str,
        id: u64,
        to: QuestionState,
    ) -> Result<QuestionView, QuestionError> {
        let dc = self.channel(channel)?;
        let _one = dc.admin.lock().await;
        if let Some(c) = self.chat.shared().cloned() {
            if let Some(r) = self.set_state_shared(&c, &dc, id, to).await {
                return r;
            }
        }
        let changes = changes_for(&dc.lock(), id, to)?;
        let stored = changes.clone();
        self.db
            .write(move |tx| {
                for (id, s) in &stored {
                    rows::set_state(tx, *id, s.as_str())?;
                }
                Ok(())
            })
            .await
            .map_err(|e| super::unsaved(channel, "question state", e))?;
        let mut st = dc.lock();
        let pin_moved = apply_changes(&mut st, &changes);
        for (qid, _) in &changes {
            if let Some(q) = st.questions.get(qid) {
                self.emit_question(&dc.name, q);
            }
        }
        if pin_moved {
            self.emit_pinned(&dc.name, &st);
        }
        info!(channel = %dc.name, id, state = to.as_str(), "question moved");
        st.questions
            .get(&id)
            .map(Question::view)
            .ok_or(QuestionError::NoSuchQuestion { id })
    }

    /// Starts the speaking timer for `seconds` from now (0 stops it); every page gets a
    /// `timer` event with the deadline.
    pub async fn set_timer(
        &self,
        channel: &str,
        seconds: u64,
    ) -> Result<Option<TimerView>, QuestionError> {
        if seconds > MAX_TIMER_SECONDS {
            return Err(QuestionError::TimerTooLong { seconds });
        }
        let dc = self.channel(channel)?;
        let ends_at = Utc::now() + chrono::Duration::seconds(seconds as i64);
        if let Some(c) = self.chat.shared().cloned() {
            if let Some(r) = self.set_timer_shared(&c, &dc, seconds, ends_at).await {
                return r;
            }
        }
        let mut st = dc.lock();
        let (view, data) = set_timer_in(&mut st, seconds, ends_at);
        self.emit(&dc.name, "timer", &data);
        info!(channel = %dc.name, seconds, "speaking timer set");
        Ok(view)
    }

    /// The channel's questions (queue first, by votes then age; then the closed ones), the
    /// pinned one and the timer, as `viewer` sees them.
    pub fn list(
        &self,
        channel: &str,
        viewer: Option<&Viewer<'_>>,
    ) -> Result<Listing, QuestionError> {
        let dc = self.channel(channel)?;
        let key = viewer.map(Viewer::key);
        let st = dc.lock();
        // Read under our lock: no debate event can slip between this id and the listing.
        let event_id = self.chat.channel(channel).map_or(0, |ch| ch.lock().last_id);
        let mut questions: Vec<ListedQuestion> = st
            .questions
            .values()
            .map(|q| ListedQuestion {
                voted: key.as_ref().is_some_and(|k| q.voters.contains(k)),
                question: q.view(),
            })
            .collect();
        questions.sort_by(|a, b| order(&a.question, &b.question));
        Ok(Listing {
            questions,
            pinned: st.pinned,
            timer: st.timer.as_ref().map(Timer::view),
            event_id,
        })
    }
}

/// Puts stored questions (of one channel, already in `channels`) into memory.
fn rows_into(channels: &HashMap<String, Arc<DebateChannel>>, rows: Vec<QuestionRow>) {
    for row in rows {
        let Some(state) = QuestionState::parse(&row.state) else {
            error!(id = row.id, state = %row.state, "questions: skipping a row with an unknown state");
            continue;
        };
        let Some(ch) = channels.get(&row.channel) else {
            continue;
        };
        let mut st = ch.lock();
        if state == QuestionState::Pinned {
            st.pinned = Some(row.id);
        }
        let voters = row.voters.iter().cloned().collect();
        let id = row.id;
        let q = Question {
            row,
            state,
            before_pin: QuestionState::Open,
            voters,
        };
        st.questions.insert(id, q);
    }
}

fn new_channel(name: &str) -> Arc<DebateChannel> {
    Arc::new(DebateChannel {
        name: name.to_string(),
        state: Mutex::new(DebateState::default()),
        admin: tokio::sync::Mutex::new(()),
        applied: tokio::sync::watch::Sender::new(0),
    })
}
