//! Abuse of the public HTTP port: slow headers, too many connections, huge headers, odd paths,
//! and the byte ranges and HEAD requests that players and caches send for segments. Raw TCP
//! where a client library would tidy the request up.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::rtmp::RtmpClient;
use common::*;

const SECS: Duration = Duration::from_secs(1);

/// Sends raw request bytes (the caller adds `Connection: close`); returns the status and the
/// whole response, or None if the server closed without answering.
fn raw(addr: &str, request: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(10 * SECS)).expect("timeout");
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

fn get_raw(addr: &str, path: &str) -> Option<(u16, String)> {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn slow_headers_time_out_while_others_are_served() {
    let srv = TestServer::start_with("", &[("ONAIR__HTTP__HEADER_TIMEOUT_SECONDS", "1")]);
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(&srv.http).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        slow.push(s);
    }
    assert_eq!(srv.get("/healthz").0, 200);
    let t = Instant::now();
    for s in &mut slow {
        assert!(closed_by_peer(s, 5 * SECS), "slow client kept open");
    }
    assert!(t.elapsed() < 4 * SECS, "took {:?}", t.elapsed());
    assert_eq!(srv.get("/healthz").0, 200);
    srv.wait_log(
        "request headers not received within http.header_timeout_seconds (1 s)",
        5 * SECS,
    );
    assert!(srv.logs().contains("peer=127.0.0.1:"), "{}", srv.logs());
    // Twenty at once: logged once (or twice across a second boundary), with a count.
    let lines = srv.logs().matches("http.header_timeout_seconds").count();
    assert!(lines <= 3, "{lines} lines for one burst");
}

#[test]
fn connections_beyond_the_limit_wait_and_are_logged() {
    let srv = TestServer::start_with(
        "",
        &[
            ("ONAIR__HTTP__MAX_CONNECTIONS", "8"),
            ("ONAIR__HTTP__HEADER_TIMEOUT_SECONDS", "30"),
        ],
    );
    // Eight connections that say nothing hold every slot.
    let holders: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&srv.http).expect("connect"))
        .collect();
    srv.wait_log("http.max_connections reached", 5 * SECS);
    // A ninth is not served while they hold the slots...
    let mut late = TcpStream::connect(&srv.http).expect("connect (backlog)");
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    late.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    assert!(late.read(&mut buf).is_err(), "served beyond the limit");
    // ...and is served once they go.
    drop(holders);
    late.set_read_timeout(Some(5 * SECS)).expect("timeout");
    let mut out = Vec::new();
    let _ = late.read_to_end(&mut out);
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn huge_headers_are_refused() {
    let srv = TestServer::start("");
    let mut req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
    for i in 0..2000 {
        req.extend_from_slice(format!("X-Junk-{i}: {}\r\n", "a".repeat(60)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    // Closed without an answer is a refusal too.
    if let Some((status, _)) = raw(&srv.http, &req) {
        assert_eq!(status, 431);
    }
    let one = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200_000)
    );
    if let Some((status, _)) = raw(&srv.http, one.as_bytes()) {
        assert_eq!(status, 431);
    }
    assert_eq!(srv.get("/healthz").0, 200);
    srv.wait_log("http request refused: headers larger than 32 KiB", 5 * SECS);
}

/// Request headers are capped as nginx caps them: a line over 16 KiB, or a head over 32 KiB in
/// all, is answered 431 over HTTP/1.1 and HTTP/2 (h2c, curl), while a live stream's playlists,
/// the API and requests within the limits go on.
#[test]
fn header_limits_answer_431_and_leave_others_alone() {
    let _g = media_lock();
    let srv = TestServer::start("");
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 30.0,
            ..Default::default()
        },
    );
    let before = srv.wait_segments("alice", "source", 1, 30 * SECS);
    let http1 = |headers: &str| {
        raw(
            &srv.http,
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n")
                .as_bytes(),
        )
        .map(|r| r.0)
    };
    let line = |name: &str, n: usize| format!("{name}: {}\r\n", "a".repeat(n));
    let lines = |count: usize, n: usize| -> String {
        (0..count).map(|i| line(&format!("X-H{i}"), n)).collect()
    };
    // One 100 KB header (answered 200 before the limits).
    assert_eq!(http1(&line("X-Big", 100_000)), Some(431));
    // One 20 KB line in a head under 32 KiB: the line is too long.
    assert_eq!(http1(&line("X-Line", 20_000)), Some(431));
    // 20 lines of 2 KB: 40 KB in all.
    assert_eq!(http1(&lines(20, 2_000)), Some(431));
    // Within the limits.
    assert_eq!(http1(&line("X-Ok", 8_000)), Some(200));
    assert_eq!(http1(&lines(10, 2_000)), Some(200));
    // A request target over 16 KiB.
    let long = raw(
        &srv.http,
        format!(
            "GET /healthz?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "q".repeat(20_000)
        )
        .as_bytes(),
    );
    assert_eq!(long.map(|r| r.0), Some(414));

    let h2 = |headers: &[String]| -> String {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--http2-prior-knowledge");
        for h in headers {
            cmd.arg("-H").arg(h);
        }
        let out = cmd.arg(srv.url("/healthz")).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let header = |name: String, n: usize| format!("{name}: {}", "a".repeat(n));
    assert_eq!(h2(&[header("X-Line".into(), 20_000)]), "2 431");
    let many: Vec<String> = (0..20).map(|i| header(format!("X-H{i}"), 2_000)).collect();
    assert_eq!(h2(&many), "2 431");
    assert_eq!(h2(&[header("X-Ok".into(), 8_000)]), "2 200");
    assert_eq!(h2(&many[..10]), "2 200");

    // The stream went on, and so did everyone else's requests.
    let msn = |p: &str| {
        tag_value(p, "#EXT-X-MEDIA-SEQUENCE")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + count_segments(p) as u64
    };
    let start = msn(&before);
    wait_for(30 * SECS, "the stream's next segment", || {
        let (s, p) = srv.get("/hls/alice/source/index.m3u8");
        (s == 200 && msn(&p) > start).then_some(())
    });
    assert_eq!(srv.get("/api/channels/alice").0, 200);
    assert_eq!(srv.get("/healthz").0, 200);
    srv.wait_log("http request refused", 5 * SECS);
}

#[test]
fn odd_paths_are_not_found() {
    let srv = TestServer::start("");
    let long = format!("/hls/{}/source/index.m3u8", "a".repeat(5000));
    let cases = [
        "/hls/../etc/passwd",
        "/hls/alice/../../etc/passwd",
        "/hls/alice/source/..%2f..%2fonair.toml",
        "/hls/alice%2fsource/index.m3u8",
        "/hls/alice/source/%2e%2e/index.m3u8",
        "/hls/alice/source/1.ts%00.m3u8",
        "/%5c%5c..%5cetc",
        "/watch/alice/../../../../etc/passwd",
        "//healthz",
        long.as_str(),
    ];
    for path in cases {
        let (status, text) =
            get_raw(&srv.http, path).unwrap_or_else(|| panic!("{path}: no answer"));
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(!text.contains("[[channels]]"), "{path}");
    }
    // A request line longer than any buffer: refused, the server carries on.
    let huge = format!("/{}", "x".repeat(100_000));
    if let Some((status, _)) = get_raw(&srv.http, &huge) {
        assert!([404, 414, 431, 400].contains(&status), "{status}");
    }
    // Not HTTP at all.
    let _ = raw(&srv.http, &noise(4096, 5));
    let _ = raw(&srv.http, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert_eq!(srv.get("/healthz").0, 200);
}

#[test]
fn segments_answer_ranges_and_head() {
    let _g = media_lock();
    let srv = TestServer::start("");
    let _alice = RtmpClient::publishing_fixture(&srv.rtmp, ALICE_KEY);
    let p = srv.wait_segments("alice", "source", 1, 15 * SECS);
    let uri = format!("/hls/alice/source/{}", segments(&p)[0].0);
    let (status, whole) = srv.get_bytes(&uri);
    assert_eq!(status, 200);
    let len = whole.len();
    assert!(len > 1000);

    let req = |method: &str, range: Option<&str>| {
        let mut r = format!("{method} {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(range) = range {
            r.push_str(&format!("Range: {range}\r\n"));
        }
        r.push_str("\r\n");
        let mut s = TcpStream::connect(&srv.http).expect("connect");
        s.set_read_timeout(Some(10 * SECS)).expect("timeout");
        s.write_all(r.as_bytes()).expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers");
        let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
        let body = out[split + 4..].to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, head, body)
    };
    let (s, h, b) = req("GET", None);
    assert_eq!((s, b.len()), (200, len));
    assert!(h.contains("accept-ranges: bytes"), "{h}");

    let (s, h, b) = req("GET", Some("bytes=0-99"));
    assert_eq!(s, 206, "{h}");
    assert!(
        h.contains(&format!("content-range: bytes 0-99/{len}")),
        "{h}"
    );
    assert_eq!(b, whole[..100]);

    let (s, h, b) = req("GET", Some("bytes=-188"));
    assert_eq!(s, 206, "{h}");
    assert_eq!(b, whole[len - 188..]);

    let (s, h, b) = req("GET", Some(&format!("bytes={}-", len - 10)));
    assert_eq!(s, 206, "{h}");
    assert_eq!(b, whole[len - 10..]);

    let (s, h, _) = req("GET", Some(&format!("bytes={len}-")));
    assert_eq!(s, 416, "{h}");
    assert!(h.contains(&format!("content-range: bytes */{len}")), "{h}");

    // Several ranges or another unit: the whole segment.
    let (s, _, b) = req("GET", Some("bytes=0-1,5-9"));
    assert_eq!((s, b.len()), (200, len));

    let (s, h, b) = req("HEAD", None);
    assert_eq!(s, 200);
    assert!(h.contains(&format!("content-length: {len}")), "{h}");
    assert!(b.is_empty());

    let (s, h, b) = req("HEAD", Some("bytes=0-99"));
    assert_eq!(s, 206, "{h}");
    assert!(h.contains("content-length: 100"), "{h}");
    assert!(b.is_empty());

    // Playlists ignore ranges (they change every segment).
    let (status, _) = srv.get("/hls/alice/source/index.m3u8");
    assert_eq!(status, 200);
}

/// Opens a chat event stream on a raw connection and returns it once the response head is in
/// (or the status it was refused with).
fn open_event_stream(addr: &str, channel: &str) -> Result<TcpStream, u16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(10 * SECS)).expect("timeout");
    s.write_all(
        format!("GET /api/channels/{channel}/events HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    match text.split_whitespace().nth(1).and_then(|c| c.parse().ok()) {
        Some(200) => Ok(s),
        Some(code) => Err(code),
        None => panic!("no answer for an event stream: {text:?}"),
    }
}

/// Idle chat event streams have a budget of their own (`http.max_event_streams`): with more of
/// them open than `http.max_connections`, playlists, the API and chat posts are still answered
/// at once; past the event-stream budget a new stream is refused with 503 and Retry-After, and
/// a closed stream's place is taken again.
#[test]
fn idle_event_streams_do_not_starve_other_requests() {
    let srv = TestServer::start_with_http("max_connections = 4\nmax_event_streams = 10\n");
    let mut streams: Vec<TcpStream> = (0..10)
        .map(|i| {
            open_event_stream(&srv.http, "alice")
                .unwrap_or_else(|code| panic!("event stream {i} refused with {code}"))
        })
        .collect();
    // Ten streams hold no general slot: four connections' worth of everything else goes on.
    for _ in 0..4 {
        assert_eq!(get_raw(&srv.http, "/healthz").map(|r| r.0), Some(200));
    }
    assert_eq!(srv.get("/api/channels/alice").0, 200);
    assert_eq!(
        srv.get("/hls/alice/master.m3u8").0,
        404,
        "answered, not live"
    );
    let post = ureq::post(&srv.url("/api/channels/alice/chat"))
        .timeout(10 * SECS)
        .send_json(serde_json::json!({"nick": "carol", "text": "still here"}))
        .map(|r| r.status())
        .unwrap_or_else(|e| match e {
            ureq::Error::Status(code, _) => code,
            e => panic!("chat post: {e}"),
        });
    assert_eq!(post, 202);
    // The eleventh stream is over the budget.
    assert_eq!(open_event_stream(&srv.http, "bob").err(), Some(503));
    // One goes away; its place is free again once the server sees it close (at the latest
    // when the next keep-alive comment, every 15 s, finds the socket gone).
    drop(streams.pop());
    wait_for(40 * SECS, "a freed event-stream place", || {
        open_event_stream(&srv.http, "bob").ok()
    });
}

/// The server raises its open-file limit to the hard limit at start and fits the event-stream
/// budget to it: started with 256 open files allowed (hard limit 1024), it holds more event
/// streams than 256 (which would fail at accept with EMFILE without the raise), lowers
/// `http.max_event_streams` so that the other budgets still fit (1024 - 256 RTMP - 64 HTTP -
/// 256 reserved = 448), says so in its log, refuses the 449th stream with 503 and goes on
/// answering everything else.
#[test]
fn the_open_file_limit_is_raised_and_the_budgets_fit_it() {
    let srv = TestServer::start_with_open_files(
        "max_connections = 64\n",
        "[chat]\nmax_subscribers_per_address = 1000\n",
        256,
        1024,
    );
    srv.wait_log("http.max_event_streams lowered to 448", 10 * SECS);
    let logs = srv.logs();
    assert!(
        logs.contains("before=256") && logs.contains("soft=1024"),
        "{logs}"
    );
    let _streams: Vec<TcpStream> = (0..448)
        .map(|i| {
            open_event_stream(&srv.http, "alice")
                .unwrap_or_else(|code| panic!("event stream {i} refused with {code}"))
        })
        .collect();
    assert_eq!(open_event_stream(&srv.http, "bob").err(), Some(503));
    assert_eq!(get_raw(&srv.http, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(srv.get("/api/channels/alice").0, 200);
    assert!(
        !srv.logs().contains("Too many open files"),
        "{}",
        srv.logs()
    );
}
