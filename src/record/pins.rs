//! The pinned question of each recording, for the replay: the debate tells the recorder every
//! change of a channel's pinned question ([`Recorder::question_pinned`], set up in `lib.rs`
//! through `chat::questions::Debate::on_pinned`), and the changes made while a recording is
//! made go to its log with their media time, like chat messages ([`super::chatlog`],
//! `db::recording_pins`). A recording that starts (or resumes after a reconnect) with a
//! question already pinned logs it at its start ([`Recorder::sync_pin`], once the recording's
//! row is in the index: the log refuses rows of unknown recordings), so the replay shows it
//! from there. Never waits: a full log queue drops the change (counted).

use std::collections::HashMap;
use std::sync::Arc;

use super::{chatlog, lock, Recorder};
use crate::chat::questions::QuestionView;
use crate::db::recording_pins::PinRow;

/// What the recorder knows of one channel's pin.
#[derive(Debug, Default)]
struct ChannelPin {
    /// The question pinned now: id and JSON.
    current: Option<(u64, Arc<str>)>,
    /// The last change logged: recording id and the question it pinned.
    logged: Option<(String, Option<u64>)>,
}

/// Every channel's pin. Behind the recorder's std mutex, held for map updates only.
#[derive(Debug, Default)]
pub(crate) struct Pins(HashMap<String, ChannelPin>);

impl Recorder {
    /// The channel's pinned question changed (`None`: none is pinned now). Logged at the
    /// media time of the recording being made, if any.
    pub fn question_pinned(&self, channel: &str, question: Option<&QuestionView>) {
        let current = question.and_then(|q| {
            let json = serde_json::to_string(q).ok()?;
            Some((q.id, Arc::<str>::from(json)))
        });
        lock(&self.pins)
            .0
            .entry(channel.to_string())
            .or_default()
            .current = current;
        self.sync_pin(channel);
    }

    /// Logs the channel's pinned question in the recording being made, unless that is what
    /// the recording's log already says (a recording starting with nothing pinned logs
    /// nothing). Nothing before the recording is in the index ([`Recorder::listed`] calls
    /// this again then).
    pub(crate) fn sync_pin(&self, channel: &str) {
        let Some(clock) = lock(&self.live).get(channel).cloned() else {
            return;
        };
        let listed = lock(&self.shows)
            .get(channel)
            .is_some_and(|(id, _)| *id == clock.id);
        if !listed {
            return;
        }
        let row = {
            let mut pins = lock(&self.pins);
            let p = pins.0.entry(channel.to_string()).or_default();
            let want = p.current.as_ref().map(|(id, _)| *id);
            let known = p.logged.as_ref().filter(|(rec, _)| *rec == clock.id);
            let logged = known.and_then(|(_, q)| *q);
            if logged == want && (known.is_some() || want.is_none()) {
                return;
            }
            p.logged = Some((clock.id.clone(), want));
            PinRow {
                offset_ms: clock.now_ms().max(0),
                question_id: want.map(|id| id as i64),
                question: p.current.as_ref().map(|(_, q)| q.to_string()),
            }
        };
        let item = chatlog::Item::Pin {
            channel: channel.to_string(),
            recording: clock.id,
            row,
        };
        if self.chat.try_send(item).is_err() {
            metrics::counter!("onair_record_chat_dropped_total").increment(1);
        }
    }
}
