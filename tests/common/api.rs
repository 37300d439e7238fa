//! The JSON API as a script or an admin's curl uses it: one request, its status, the headers
//! tests look at and the body parsed as JSON (or kept as a string when it is not JSON).

use std::time::Duration;

use serde_json::{json, Value};

use super::TestServer;

/// The admin token tests configure (`server.admin_token`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A server's answer.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub www_authenticate: Option<String>,
    pub body: Value,
}

/// One request; a connection error panics.
pub fn request(
    srv: &TestServer,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = ureq::request(method, &srv.url(path)).timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let retry_after = resp.header("retry-after").map(String::from);
    let www_authenticate = resp.header("www-authenticate").map(String::from);
    let text = resp.into_string().unwrap_or_default();
    Answer {
        status,
        retry_after,
        www_authenticate,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// Posts a chat message.
pub fn post_chat(srv: &TestServer, channel: &str, nick: &str, text: &str) -> Answer {
    request(
        srv,
        "POST",
        &format!("/api/channels/{channel}/chat"),
        Some(&json!({"nick": nick, "text": text}).to_string()),
        &[],
    )
}

/// An admin request with [`ADMIN_TOKEN`].
pub fn admin(srv: &TestServer, method: &str, path: &str, body: Option<Value>) -> Answer {
    bearer(srv, ADMIN_TOKEN, method, path, body)
}

/// A request with `Authorization: Bearer {token}` (an admin token or a stream key).
pub fn bearer(
    srv: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let auth = format!("Bearer {token}");
    request(
        srv,
        method,
        path,
        body.map(|b| b.to_string()).as_deref(),
        &[("Authorization", &auth)],
    )
}

/// Asks a question on `channel` (as the watch page does); 202 with the question.
pub fn ask(srv: &TestServer, channel: &str, nick: &str, text: &str) -> Answer {
    request(
        srv,
        "POST",
        &format!("/api/channels/{channel}/questions"),
        Some(&json!({"nick": nick, "text": text}).to_string()),
        &[],
    )
}

/// Moves a question (`pinned`, `answered`, ...) as the studio does, with [`ADMIN_TOKEN`].
pub fn question_state(srv: &TestServer, channel: &str, id: u64, state: &str) -> Answer {
    admin(
        srv,
        "PUT",
        &format!("/api/admin/channels/{channel}/questions/{id}"),
        Some(json!({ "state": state })),
    )
}
