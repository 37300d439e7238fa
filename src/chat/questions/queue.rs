//! The broadcaster's queue as state changes, shared by a single node's requests and by the
//! cluster's applier (`shared`): which questions a move changes (a pin returns the pinned one
//! to where it was), making those changes, and setting the timer. Pure: no locks, no IO.

use chrono::Utc;

use super::{DebateState, QuestionError, QuestionState, Timer, TimerView};
use crate::chat::now_rfc3339;

/// The changes that moving question `id` to `to` makes: pinning one returns the pinned one
/// (if any) to where it was; nothing for a question already there.
pub(super) fn changes_for(
    st: &DebateState,
    id: u64,
    to: QuestionState,
) -> Result<Vec<(u64, QuestionState)>, QuestionError> {
    let q = st
        .questions
        .get(&id)
        .ok_or(QuestionError::NoSuchQuestion { id })?;
    let mut changes = vec![(id, to)];
    if to == QuestionState::Pinned {
        if let Some(p) = st.pinned.filter(|p| *p != id) {
            let back = st
                .questions
                .get(&p)
                .map_or(QuestionState::Open, |q| q.before_pin);
            changes.push((p, back));
        }
    }
    if q.state == to {
        changes.retain(|(i, _)| *i != id);
    }
    Ok(changes)
}

/// Makes [`changes_for`]'s changes in memory; true if the pin moved.
pub(super) fn apply_changes(st: &mut DebateState, changes: &[(u64, QuestionState)]) -> bool {
    let before = st.pinned;
    for (qid, s) in changes {
        if let Some(q) = st.questions.get_mut(qid) {
            if *s == QuestionState::Pinned && q.state != QuestionState::Pinned {
                q.before_pin = q.state;
            }
            q.state = *s;
        }
        if *s == QuestionState::Pinned {
            st.pinned = Some(*qid);
        } else if st.pinned == Some(*qid) {
            st.pinned = None;
        }
    }
    for (qid, _) in changes {
        st.dirty.retain(|d| d != qid);
    }
    st.pinned != before
}

/// Sets (or, for 0 seconds, stops) the timer; its view and its `timer` event's data.
pub(super) fn set_timer_in(
    st: &mut DebateState,
    seconds: u64,
    ends_at: chrono::DateTime<Utc>,
) -> (Option<TimerView>, serde_json::Value) {
    st.timer = (seconds > 0).then_some(Timer { ends_at, seconds });
    let view = st.timer.as_ref().map(Timer::view);
    let data = match &view {
        Some(v) => serde_json::to_value(v).unwrap_or_default(),
        None => serde_json::json!({
            "ends_at": null, "running": false, "seconds": 0, "now": now_rfc3339(Utc::now())
        }),
    };
    (view, data)
}
