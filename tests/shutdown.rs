//! Shutdown: SIGTERM stops accepting, ends live playlists with ENDLIST, closes chat event
//! streams, drains HTTP and exits within 5 s; a second signal exits at once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::rtmp::{fixture_tags, RtmpClient};
use common::*;
use onair::config::{ChannelConfig, Config, Secret};

const SECS: Duration = Duration::from_secs(1);

#[test]
fn shutdown_ends_live_playlists_with_endlist_and_stops_accepting() {
    let _g = media_lock();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cfg = Config::default();
    cfg.rtmp.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.http.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.webrtc.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.storage.data_dir = temp_dir("shutdown-db");
    cfg.srt.listen = "127.0.0.1:0".into();
    cfg.channels = vec![ChannelConfig {
        name: "alice".into(),
        key: Secret::new(ALICE_KEY),
        key_env: None,
        title: None,
        owners: Vec::new(),
    }];
    let server = rt.block_on(onair::Server::start(cfg)).expect("start");
    let (rtmp, http) = (server.rtmp_addr.to_string(), server.http_addr.to_string());
    let store = server.store.clone();
    // A live publisher: 3 s of media sent, the connection left open.
    let mut alice = RtmpClient::publisher(&rtmp, ALICE_KEY);
    alice
        .send_tags(&fixture_tags("testsrc-320x180.flv"), 0)
        .expect("send");
    let live = wait_for(15 * SECS, "a segment", || {
        store
            .media_playlist("alice", "source")
            .ok()
            .filter(|p| count_segments(&String::from_utf8_lossy(p)) >= 1)
    });
    assert!(!String::from_utf8_lossy(&live).contains("#EXT-X-ENDLIST"));
    // An HTTP client stuck in the middle of its headers.
    let mut stuck = TcpStream::connect(&http).expect("connect");
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("write");

    let t = Instant::now();
    rt.block_on(server.shutdown(Duration::from_secs(4)));
    let took = t.elapsed();
    assert!(took < 5 * SECS, "shutdown took {took:?}");

    let ended = String::from_utf8_lossy(&store.media_playlist("alice", "source").expect("kept"))
        .into_owned();
    assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");
    // The open segment was closed and listed, not lost.
    assert_eq!(count_segments(&ended), 2, "{ended}");
    assert!(
        TcpStream::connect(&rtmp).is_err(),
        "RTMP still accepting after shutdown"
    );
    assert!(
        TcpStream::connect(&http).is_err(),
        "HTTP still accepting after shutdown"
    );
    // The publisher's connection was closed.
    assert!(alice.closed_by_server(5 * SECS));
    let mut buf = [0u8; 64];
    let _ = stuck.set_read_timeout(Some(SECS));
    assert!(matches!(stuck.read(&mut buf), Ok(0) | Err(_)));
    drop(rt);
}

/// The binary: SIGTERM with a live publisher, an idle keep-alive connection, a client stuck
/// mid-headers and open chat event streams exits cleanly within 5 s and closes the streams.
#[test]
fn sigterm_exits_within_5_s_with_clients_connected() {
    let _g = media_lock();
    let mut srv = TestServer::start("");
    let mut alice = RtmpClient::publishing_fixture(&srv.rtmp, ALICE_KEY);
    srv.wait_segments("alice", "source", 1, 15 * SECS);
    let mut keepalive = TcpStream::connect(&srv.http).expect("connect");
    keepalive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 1024];
    keepalive.set_read_timeout(Some(5 * SECS)).expect("timeout");
    assert!(keepalive.read(&mut buf).expect("answer") > 0);
    let mut stuck = TcpStream::connect(&srv.http).expect("connect");
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("write");
    // Chat event streams that never end on their own.
    let mut streams: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(&srv.http).expect("connect");
            s.write_all(b"GET /api/channels/alice/events HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            s.set_read_timeout(Some(5 * SECS)).expect("timeout");
            let n = s.read(&mut buf).expect("event stream head");
            let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            assert!(head.contains("text/event-stream"), "{head}");
            s
        })
        .collect();

    let (status, took) = srv.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < 5 * SECS, "shutdown took {took:?}");
    // The log reader may still be draining the pipe of the exited process.
    srv.wait_log("shutting down", 5 * SECS);
    srv.wait_log("stopped", 5 * SECS);
    assert!(!srv.logs().contains(ALICE_KEY));
    assert!(alice.closed_by_server(2 * SECS));
    // The event streams were closed, not left hanging.
    for s in &mut streams {
        let _ = s.set_read_timeout(Some(2 * SECS));
        let mut rest = Vec::new();
        let r = s.read_to_end(&mut rest);
        assert!(
            r.is_ok()
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "event stream still open: {r:?}"
        );
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let _g = media_lock();
    let mut srv = TestServer::start("");
    let _alice = RtmpClient::publishing_fixture(&srv.rtmp, ALICE_KEY);
    srv.wait_segments("alice", "source", 1, 15 * SECS);
    // A client stuck mid-headers keeps the HTTP drain busy for its full allowance.
    let mut stuck = TcpStream::connect(&srv.http).expect("connect");
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("write");
    let t = Instant::now();
    srv.signal("TERM");
    srv.wait_log("shutting down", 5 * SECS);
    // The drain waits up to 3 s for the stuck client; the second signal cuts it short.
    assert!(srv.running(), "exited before the second signal");
    srv.signal("INT");
    wait_for(5 * SECS, "onair to exit", || (!srv.running()).then_some(()));
    let took = t.elapsed();
    assert!(took < 2 * SECS, "exit took {took:?}");
    srv.wait_log("second signal: exiting now", SECS);
    let _ = stuck;
}
