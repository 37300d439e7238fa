//! The debate's public types: question states, refusals, who a viewer is, and what clients
//! see (questions, the timer, the listing), with the queue's order. Pure: no locks, no IO.

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::super::ChatError;
use crate::config::MAX_TIMER_SECONDS;
use crate::identity::Identity;

/// A question's place in the broadcaster's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionState {
    Open,
    Shortlisted,
    Pinned,
    Answered,
    Dismissed,
}

impl QuestionState {
    pub fn as_str(self) -> &'static str {
        match self {
            QuestionState::Open => "open",
            QuestionState::Shortlisted => "shortlisted",
            QuestionState::Pinned => "pinned",
            QuestionState::Answered => "answered",
            QuestionState::Dismissed => "dismissed",
        }
    }

    /// A state by its name or by the admin's verb (`pin`, `shortlist`, `answer`, `dismiss`,
    /// `reopen`).
    pub fn parse(s: &str) -> Option<QuestionState> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "open" | "reopen" | "unpin" => QuestionState::Open,
            "shortlisted" | "shortlist" => QuestionState::Shortlisted,
            "pinned" | "pin" => QuestionState::Pinned,
            "answered" | "answer" => QuestionState::Answered,
            "dismissed" | "dismiss" => QuestionState::Dismissed,
            _ => return None,
        })
    }

    /// Answered and dismissed questions have left the queue (still listed, no votes).
    pub fn is_closed(self) -> bool {
        matches!(self, QuestionState::Answered | QuestionState::Dismissed)
    }
}

/// Why a debate request was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuestionError {
    /// The chat's refusals (no channel, bad input, too long, banned, rate limited, unsaved).
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error("no such question")]
    NoSuchQuestion { id: u64 },
    #[error("this question is {state}: it takes no votes")]
    Closed { state: &'static str },
    #[error("state must be open, shortlisted, pinned, answered or dismissed")]
    BadState,
    #[error("the timer is limited to {max} seconds", max = MAX_TIMER_SECONDS)]
    TimerTooLong { seconds: u64 },
    #[error("too many votes at once; retry")]
    Busy,
}

/// Who asks or votes: the signed-in identity, else the client address.
#[derive(Debug, Clone)]
pub struct Viewer<'a> {
    pub addr: IpAddr,
    pub identity: Option<&'a Identity>,
}

impl Viewer<'_> {
    /// The key limits and votes count by: `provider:id`, or `address:` and a hash of it (the
    /// database keeps no viewer's address).
    pub fn key(&self) -> String {
        match self.identity {
            Some(i) => i.key(),
            None => {
                let h = Sha256::digest(self.addr.to_string().as_bytes());
                let hex: String = h[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("address:{hex}")
            }
        }
    }
}

/// A question as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionView {
    pub id: u64,
    pub text: String,
    pub author: Option<Identity>,
    pub nick: String,
    pub votes: usize,
    pub state: QuestionState,
    pub asked_at: String,
    /// `started_at` of the broadcast it was asked in (`null`: asked while offline).
    pub broadcast: Option<String>,
}

/// The speaking timer as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimerView {
    /// RFC 3339 deadline; `null` when stopped.
    pub ends_at: Option<String>,
    /// The deadline is still ahead.
    pub running: bool,
    pub seconds: u64,
    /// The server's clock when this was said: pages correct theirs by it.
    pub now: String,
}

/// `GET /api/channels/{c}/questions`.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Queue first (by votes, then age), then answered and dismissed ones.
    pub questions: Vec<ListedQuestion>,
    pub pinned: Option<u64>,
    pub timer: Option<TimerView>,
    /// The channel's last event id when this was read: pages skip replayed `question`,
    /// `pinned` and `timer` events up to it (they are already in this listing).
    pub event_id: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListedQuestion {
    #[serde(flatten)]
    pub question: QuestionView,
    /// The asking viewer has voted for it.
    pub voted: bool,
}

/// Queue first, then answered and dismissed; within each, most votes first, then oldest.
pub fn order(a: &QuestionView, b: &QuestionView) -> std::cmp::Ordering {
    (a.state.is_closed(), std::cmp::Reverse(a.votes), a.id).cmp(&(
        b.state.is_closed(),
        std::cmp::Reverse(b.votes),
        b.id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_names_and_verbs() {
        let cases = [
            ("open", Some(QuestionState::Open)),
            ("reopen", Some(QuestionState::Open)),
            ("Pin", Some(QuestionState::Pinned)),
            ("pinned", Some(QuestionState::Pinned)),
            ("shortlist", Some(QuestionState::Shortlisted)),
            ("answered", Some(QuestionState::Answered)),
            ("dismiss", Some(QuestionState::Dismissed)),
            ("delete", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(QuestionState::parse(s), want, "{s}");
        }
        assert!(QuestionState::Answered.is_closed() && !QuestionState::Pinned.is_closed());
    }

    fn view(id: u64, votes: usize, state: QuestionState) -> QuestionView {
        QuestionView {
            id,
            text: String::new(),
            author: None,
            nick: String::new(),
            votes,
            state,
            asked_at: String::new(),
            broadcast: None,
        }
    }

    #[test]
    fn queue_by_votes_then_age_closed_last() {
        let mut v = [
            view(1, 2, QuestionState::Open),
            view(2, 5, QuestionState::Answered),
            view(3, 2, QuestionState::Shortlisted),
            view(4, 3, QuestionState::Pinned),
            view(5, 0, QuestionState::Dismissed),
        ];
        v.sort_by(order);
        let ids: Vec<u64> = v.iter().map(|q| q.id).collect();
        assert_eq!(ids, [4, 1, 3, 2, 5]);
    }

    #[test]
    fn anonymous_viewers_are_keyed_by_a_hash_of_their_address() {
        let v = Viewer {
            addr: "192.0.2.7".parse().unwrap(),
            identity: None,
        };
        let k = v.key();
        assert!(k.starts_with("address:") && !k.contains("192.0.2.7"), "{k}");
        assert_eq!(k.len(), "address:".len() + 24);
    }
}
