//! Votes: one per viewer and question, changed in memory at once and committed by one writer
//! task in batches (group commit); their `question` events are coalesced per channel: at most
//! [`VOTE_EVENTS_PER_FLUSH`] every [`VOTE_EVENT_INTERVAL`], however many questions get votes.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::{
    Debate, DebateChannel, DebateState, QuestionError, Viewer, VOTE_BATCH, VOTE_EVENTS_PER_FLUSH,
    VOTE_EVENT_INTERVAL,
};
use crate::chat::ChatError;
use crate::db::questions as rows;
use crate::db::Db;

/// A vote waiting for the writer.
pub(super) struct VoteJob {
    question: u64,
    voter: String,
    add: bool,
    done: oneshot::Sender<bool>,
}

impl Debate {
    /// Votes for a question (`add`) or takes the vote back; answers with the count once the
    /// change is committed. Voting twice (or taking back a vote never given) changes nothing.
    pub async fn vote(
        self: &Arc<Self>,
        channel: &str,
        viewer: &Viewer<'_>,
        id: u64,
        add: bool,
    ) -> Result<usize, QuestionError> {
        let dc = self.channel(channel)?;
        self.check_bans(channel, viewer, None)?;
        let key = viewer.key();
        if let Some(c) = self.chat.shared().cloned() {
            // In a cluster the vote counts where it comes back from Redis, on every node.
            if let Some(r) = self.vote_shared(&c, &dc, &key, id, add).await {
                return r;
            }
        }
        let done = {
            let mut st = dc.lock();
            let q = st
                .questions
                .get_mut(&id)
                .ok_or(QuestionError::NoSuchQuestion { id })?;
            if q.state.is_closed() {
                return Err(QuestionError::Closed {
                    state: q.state.as_str(),
                });
            }
            let changed = if add {
                q.voters.insert(key.clone())
            } else {
                q.voters.remove(&key)
            };
            if !changed {
                return Ok(q.voters.len());
            }
            let (tx, rx) = oneshot::channel();
            let job = VoteJob {
                question: id,
                voter: key.clone(),
                add,
                done: tx,
            };
            // Queued under the lock: the writer sees the votes in the order memory did.
            if self.votes.try_send(job).is_err() {
                if add {
                    q.voters.remove(&key);
                } else {
                    q.voters.insert(key);
                }
                return Err(QuestionError::Busy);
            }
            self.touch(&dc, &mut st, id);
            rx
        };
        if done.await != Ok(true) {
            let mut st = dc.lock();
            if let Some(q) = st.questions.get_mut(&id) {
                if add {
                    q.voters.remove(&key);
                } else {
                    q.voters.insert(key);
                }
            }
            self.touch(&dc, &mut st, id);
            return Err(ChatError::Unsaved.into());
        }
        let votes = dc.lock().questions.get(&id).map_or(0, |q| q.voters.len());
        Ok(votes)
    }

    /// Marks a question's votes changed: published now if the channel's last vote event is
    /// [`VOTE_EVENT_INTERVAL`] old, else at the end of the interval.
    pub(super) fn touch(self: &Arc<Self>, dc: &Arc<DebateChannel>, st: &mut DebateState, id: u64) {
        if !st.dirty.contains(&id) {
            st.dirty.push_back(id);
        }
        self.schedule(dc, st);
    }

    /// Flushes now if the last flush is an interval old, else at the end of the interval.
    fn schedule(self: &Arc<Self>, dc: &Arc<DebateChannel>, st: &mut DebateState) {
        if st.flush_scheduled || st.dirty.is_empty() {
            return;
        }
        let now = Instant::now();
        match st.last_flush.map(|t| t + VOTE_EVENT_INTERVAL) {
            Some(due) if due > now => {
                st.flush_scheduled = true;
                let (me, dc) = (self.clone(), dc.clone());
                self.tracker.spawn(async move {
                    tokio::time::sleep_until(due.into()).await;
                    let mut st = dc.lock();
                    st.flush_scheduled = false;
                    me.flush(&dc, &mut st);
                });
            }
            _ => self.flush(dc, st),
        }
    }

    /// Publishes the [`VOTE_EVENTS_PER_FLUSH`] questions dirty longest; the rest wait for
    /// the next interval (first in, first out, so none waits for ever).
    fn flush(self: &Arc<Self>, dc: &Arc<DebateChannel>, st: &mut DebateState) {
        st.last_flush = Some(Instant::now());
        for _ in 0..VOTE_EVENTS_PER_FLUSH {
            let Some(id) = st.dirty.pop_front() else {
                break;
            };
            if let Some(q) = st.questions.get(&id) {
                self.emit_votes(&dc.name, q);
            }
        }
        self.schedule(dc, st);
    }
}

/// Commits queued votes, as many as are waiting in one transaction, then answers their voters.
pub(super) async fn vote_writer(db: Db, mut rx: mpsc::Receiver<VoteJob>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < VOTE_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let ops: Vec<(u64, String, bool)> = batch
            .iter()
            .map(|j| (j.question, j.voter.clone(), j.add))
            .collect();
        let n = ops.len();
        let saved = db
            .write(move |tx| {
                for (id, voter, add) in &ops {
                    rows::vote(tx, *id, voter, *add)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = &saved {
            error!(error = %e, votes = n, "votes not saved to the database; taken back");
        }
        for j in batch {
            let _ = j.done.send(saved.is_ok());
        }
    }
}
