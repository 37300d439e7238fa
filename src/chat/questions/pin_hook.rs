//! The pin hook: whoever records the shows (the recorder, set up in `lib.rs`) is told every
//! change of a channel's pinned question, so a replay can show it at its moment. Called under
//! the debate channel's lock, so in the order of the changes: the hook must only hand the
//! question on, never wait.

use std::sync::Arc;

use super::{Debate, DebateChannel, DebateState, Question, QuestionView};

/// Told each change of a channel's pinned question: the channel and the question now pinned
/// (`None`: none). Called under the debate channel's lock: hand it on, never wait.
pub type PinHook = Arc<dyn Fn(&str, Option<&QuestionView>) + Send + Sync>;

impl Debate {
    /// Hands the channel's pinned question (or none) to the pin hook, if one is set.
    /// Called with the debate channel's lock held.
    pub(super) fn tell_pinned(&self, channel: &str, st: &DebateState) {
        if let Some(hook) = self.pin_hook.get() {
            let q = st
                .pinned
                .and_then(|id| st.questions.get(&id))
                .map(Question::view);
            hook(channel, q.as_ref());
        }
    }

    /// Tells `hook` every change of a pinned question from now on, starting with each
    /// channel's pinned question now (set once; a second hook is ignored).
    pub fn on_pinned(&self, hook: PinHook) {
        if self.pin_hook.set(hook).is_err() {
            return;
        }
        let channels: Vec<Arc<DebateChannel>> = self
            .channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for dc in channels {
            let st = dc.lock();
            if st.pinned.is_some() {
                self.tell_pinned(&dc.name, &st);
            }
        }
    }
}
