//! The debate surface: `GET`/`POST /api/channels/{c}/questions` (the list, its Markdown
//! export with `?format=markdown`, and asking), `POST`/`DELETE .../questions/{id}/vote`, the
//! channel-scoped admin routes `PUT /api/admin/channels/{c}/questions/{id}` (`{"state"}`) and
//! `PUT /api/admin/channels/{c}/timer` (`{"seconds"}`), and the OBS overlay page
//! `/overlay/{c}`. The rules live in `crate::chat::questions`; who may ask follows `chat.mode`
//! (as for chat) and `debate.require_sign_in`.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use serde::Deserialize;

use super::admin::authorize_channel_request;
use super::auth::session_of;
use super::chat::{chat_error, gate_error};
use super::pages::html_escape;
use super::request::{read_json, Req};
use super::response::{bytes_response, html, json, json_error, not_found};
use super::router::Route;
use super::{Body, HttpState};
use crate::chat::questions::{Listing, QuestionError, QuestionState, Viewer};
use crate::identity::Session;

const OVERLAY_TEMPLATE: &str = include_str!("../../assets/overlay.html");

/// `POST /api/channels/{c}/questions`
#[derive(Debug, Deserialize)]
struct AskBody {
    text: String,
    /// Ignored for a signed-in viewer (their handle is their name).
    #[serde(default)]
    nick: String,
}

/// `PUT /api/admin/channels/{c}/questions/{id}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
}

/// `PUT /api/admin/channels/{c}/timer`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimerBody {
    seconds: u64,
}

/// The HTTP answer to a refused debate request.
pub fn question_error(e: &QuestionError) -> Response<Body> {
    let reason = e.to_string();
    match e {
        QuestionError::Chat(c) => chat_error(c),
        QuestionError::NoSuchQuestion { .. } => json_error(StatusCode::NOT_FOUND, &reason),
        QuestionError::Closed { .. } => json_error(StatusCode::CONFLICT, &reason),
        QuestionError::BadState | QuestionError::TimerTooLong { .. } => {
            json_error(StatusCode::BAD_REQUEST, &reason)
        }
        QuestionError::Busy => {
            let mut r = json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "error": reason, "retry_after": 1 }),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            r
        }
    }
}

/// Routes of this surface.
pub async fn handle(state: &HttpState, route: Route<'_>, req: Req) -> Response<Body> {
    match route {
        Route::Overlay(c) => match state.bus.get(c) {
            Some(_) => html(
                StatusCode::OK,
                OVERLAY_TEMPLATE.replace("{{channel}}", &html_escape(c)),
            ),
            None => not_found(),
        },
        Route::Questions(c) if req.parts.method == Method::POST => ask(state, c, req).await,
        Route::Questions(c) => list(state, c, req).await,
        Route::QuestionVote(c, id) => vote(state, c, id, req).await,
        Route::AdminQuestion(c, id) => {
            if let Err(r) = authorize_channel_request(state, &req.parts, c).await {
                return r;
            }
            let b = match read_json::<StateBody>(req.body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(to) = QuestionState::parse(&b.state) else {
                return question_error(&QuestionError::BadState);
            };
            match state.debate.set_state(c, id, to).await {
                Ok(q) => json(StatusCode::OK, &q),
                Err(e) => question_error(&e),
            }
        }
        Route::AdminTimer(c) => {
            if let Err(r) = authorize_channel_request(state, &req.parts, c).await {
                return r;
            }
            let b = match read_json::<TimerBody>(req.body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match state.debate.set_timer(c, b.seconds).await {
                Ok(t) => json(StatusCode::OK, &serde_json::json!({ "timer": t })),
                Err(e) => question_error(&e),
            }
        }
        _ => not_found(),
    }
}

/// Who may ask or vote: `chat.mode` as for chat, then `debate.require_sign_in`.
async fn gate(
    state: &HttpState,
    c: &str,
    parts: &http::request::Parts,
) -> Result<Option<Session>, Response<Body>> {
    let session = session_of(state, parts).await?;
    if state.bus.get(c).is_none() {
        return Err(not_found());
    }
    if let Err(g) = state.auth.may_chat(c, session.as_ref()).await {
        return Err(gate_error(&g));
    }
    if session.is_none() && state.debate.requires_sign_in() {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "sign in to ask and vote in this channel",
        ));
    }
    Ok(session)
}

async fn ask(state: &HttpState, c: &str, req: Req) -> Response<Body> {
    let session = match gate(state, c, &req.parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ip = req.ip;
    let b = match read_json::<AskBody>(req.body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let viewer = Viewer {
        addr: ip,
        identity: session.as_ref().map(|s| &s.identity),
    };
    match state.debate.ask(c, &viewer, &b.nick, &b.text).await {
        Ok(q) => json(StatusCode::ACCEPTED, &q),
        Err(e) => question_error(&e),
    }
}

async fn vote(state: &HttpState, c: &str, id: u64, req: Req) -> Response<Body> {
    let session = match gate(state, c, &req.parts).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let add = req.parts.method == Method::POST;
    let viewer = Viewer {
        addr: req.ip,
        identity: session.as_ref().map(|s| &s.identity),
    };
    match state.debate.vote(c, &viewer, id, add).await {
        Ok(votes) => json(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "votes": votes, "voted": add }),
        ),
        Err(e) => question_error(&e),
    }
}

async fn list(state: &HttpState, c: &str, req: Req) -> Response<Body> {
    // A bad or foreign cookie on a GET only means "anonymous" here.
    let session = session_of(state, &req.parts).await.ok().flatten();
    let viewer = Viewer {
        addr: req.ip,
        identity: session.as_ref().map(|s| &s.identity),
    };
    let listing = match state.debate.list(c, Some(&viewer)) {
        Ok(l) => l,
        Err(e) => return question_error(&e),
    };
    match req.query_param("format") {
        None | Some("json") => json(StatusCode::OK, &listing),
        Some("markdown") | Some("md") => {
            let mut r = bytes_response(
                StatusCode::OK,
                "text/markdown; charset=utf-8",
                Bytes::from(markdown(c, &listing)),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{c}-questions.md\""))
            {
                r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Some(_) => json_error(
            StatusCode::BAD_REQUEST,
            "format is \"json\" or \"markdown\"",
        ),
    }
}

/// Escapes viewer text for Markdown: no markup, no HTML, one line.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '|' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The export: one section per state, questions in list order, with votes, asker and time.
pub fn markdown(channel: &str, l: &Listing) -> String {
    let mut out = format!(
        "# Questions for {}\n\n{} questions, exported {}.\n",
        md_escape(channel),
        l.questions.len(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let sections = [
        (QuestionState::Pinned, "Pinned"),
        (QuestionState::Answered, "Answered"),
        (QuestionState::Shortlisted, "Shortlisted"),
        (QuestionState::Open, "Open"),
        (QuestionState::Dismissed, "Dismissed"),
    ];
    for (s, title) in sections {
        let qs: Vec<_> = l
            .questions
            .iter()
            .filter(|q| q.question.state == s)
            .collect();
        if qs.is_empty() {
            continue;
        }
        out.push_str(&format!("\n## {title}\n\n"));
        for (i, q) in qs.iter().enumerate() {
            let q = &q.question;
            let by = match &q.author {
                Some(a) => format!("{} ({})", a.handle, a.provider),
                None => q.nick.clone(),
            };
            out.push_str(&format!(
                "{}. {}  \n   {} vote{}, asked by {} at {}\n",
                i + 1,
                md_escape(&q.text),
                q.votes,
                if q.votes == 1 { "" } else { "s" },
                md_escape(&by),
                q.asked_at
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::questions::{ListedQuestion, QuestionView};

    #[test]
    fn markdown_export_escapes_and_groups() {
        let q = |id, text: &str, state, votes| ListedQuestion {
            question: QuestionView {
                id,
                text: text.into(),
                author: None,
                nick: "ann".into(),
                votes,
                state,
                asked_at: "2026-12-02T18:00:00.000Z".into(),
                broadcast: None,
            },
            voted: false,
        };
        let l = Listing {
            questions: vec![
                q(1, "Why *this*? <b>now</b>", QuestionState::Open, 3),
                q(2, "Answered one", QuestionState::Answered, 1),
            ],
            pinned: None,
            timer: None,
            event_id: 0,
        };
        let md = markdown("alice", &l);
        assert!(md.starts_with("# Questions for alice\n"), "{md}");
        assert!(
            md.contains("## Open\n\n1. Why \\*this\\*? &lt;b&gt;now&lt;/b&gt;"),
            "{md}"
        );
        assert!(md.contains("3 votes, asked by ann"), "{md}");
        assert!(
            md.contains("## Answered\n\n1. Answered one  \n   1 vote,"),
            "{md}"
        );
        assert!(md.find("## Answered") < md.find("## Open"), "{md}");
        assert!(!md.contains("## Dismissed"));
    }
}
