//! The event stream as a browser's EventSource reads it: a subscriber whose thread parses
//! server-sent events into a channel, with waits that have deadlines.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestServer;

const SECS: Duration = Duration::from_secs(1);

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// An event-stream subscriber: a thread reads the stream and parses events into a channel.
pub struct Sse {
    pub rx: mpsc::Receiver<Option<Event>>,
    pub status: u16,
    pub content_type: String,
}

impl Sse {
    pub fn open(srv: &TestServer, channel: &str, last_id: Option<&str>) -> Sse {
        Self::open_with(srv, channel, last_id, &[])
    }

    pub fn open_with(
        srv: &TestServer,
        channel: &str,
        last_id: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Sse {
        Self::open_path(
            srv,
            &format!("/api/channels/{channel}/events"),
            last_id,
            headers,
        )
    }

    /// Opens the event stream at `path` (which may carry a query).
    pub fn open_path(
        srv: &TestServer,
        path: &str,
        last_id: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Sse {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(5 * SECS)
            .timeout_read(60 * SECS)
            .build();
        let mut req = agent.get(&srv.url(path));
        if let Some(id) = last_id {
            req = req.set("Last-Event-ID", id);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let (tx, rx) = mpsc::channel();
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                return Sse {
                    rx,
                    status: code,
                    content_type: r.content_type().to_string(),
                }
            }
            Err(e) => panic!("event stream: {e}"),
        };
        let status = resp.status();
        let content_type = resp.header("content-type").unwrap_or("").to_string();
        let reader = BufReader::new(resp.into_reader());
        std::thread::spawn(move || {
            let mut cur = Event {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if line.is_empty() {
                    if !cur.data.is_empty() {
                        let done = std::mem::replace(
                            &mut cur,
                            Event {
                                id: None,
                                event: "message".into(),
                                data: String::new(),
                            },
                        );
                        if tx.send(Some(done)).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                if let Some(v) = line.strip_prefix("id: ") {
                    cur.id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    cur.event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    cur.data.push_str(v);
                }
            }
            let _ = tx.send(None);
        });
        Sse {
            rx,
            status,
            content_type,
        }
    }

    /// The next event matching `f`, skipping others; panics after `within`.
    pub fn next_where(&self, within: Duration, what: &str, f: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Some(e)) if f(&e) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("stream ended while waiting for {what}"),
                Err(_) => panic!("timed out after {within:?} waiting for {what}"),
            }
        }
    }

    pub fn next_event(&self, name: &str) -> Event {
        self.next_where(10 * SECS, name, |e| e.event == name)
    }

    /// Whether the stream ends within `d` (events before the end are skipped).
    pub fn ends_within(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Every event that arrives within `d`.
    pub fn drain_for(&self, d: Duration) -> Vec<Event> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while let Ok(Some(e)) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(e);
        }
        out
    }
}
