//! RTMPS: ffmpeg publishes over TLS as OBS does to `rtmps://` services, and the stream plays
//! over HLS. Plain RTMP, garbage or silence on the RTMPS port is refused with a log line while
//! the TLS publisher carries on.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(1);

#[test]
fn ffmpeg_publishes_over_rtmps_and_plain_rtmp_there_is_refused() {
    let _g = media_lock();
    let dir = temp_dir("rtmps");
    let (cert, key) = self_signed_cert(&dir);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    // Through the environment, as an admin overriding a shipped file would.
    let srv = TestServer::start_with(
        TS,
        &[
            ("ONAIR__RTMP__TLS_LISTEN", "127.0.0.1:0"),
            ("ONAIR__RTMP__TLS_CERT", &cert),
            ("ONAIR__RTMP__TLS_KEY", &key),
            ("ONAIR__RTMP__HANDSHAKE_TIMEOUT_SECONDS", "2"),
        ],
    );
    let tls_port = srv.rtmps.clone().expect("rtmps= in the address line");

    let _alice = push(
        &srv.rtmps_url(ALICE_KEY),
        PushOpts {
            seconds: 10.0,
            ..Default::default()
        },
    );

    // While alice publishes over TLS: plain RTMP, garbage and a silent client on that port.
    // Whether a short push to `url` succeeds.
    let short_push = |url: &str| {
        let opts = PushOpts {
            seconds: 2.0,
            ..Default::default()
        };
        push(url, opts).wait(30 * SECS).0
    };
    let plain = format!("rtmp://{tls_port}/live/{BOB_KEY}");
    assert!(
        !short_push(&plain),
        "plain RTMP to the RTMPS port must fail"
    );
    srv.wait_log("rtmps connection refused: TLS handshake failed", 10 * SECS);
    if let Ok(mut s) = TcpStream::connect(&tls_port) {
        let _ = s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3]);
    }
    let _silent = TcpStream::connect(&tls_port).expect("connect");
    srv.wait_log(
        "no TLS handshake within rtmp.handshake_timeout_seconds",
        10 * SECS,
    );

    // A wrong key over TLS is refused like over plain RTMP, without logging the key.
    assert!(
        !short_push(&srv.rtmps_url("not-a-key-0000")),
        "unknown key over RTMPS must be refused"
    );
    srv.wait_log("publish refused: unknown stream key", 10 * SECS);
    assert!(!srv.logs().contains("not-a-key-0000"));

    // Alice's stream went on through all of that.
    let playlist = srv.wait_segments("alice", "source", 3, 40 * SECS);
    let (name, _) = segments(&playlist).into_iter().last().expect("a segment");
    let (status, data) = srv.get_bytes(&format!("/hls/alice/source/{name}"));
    assert_eq!(status, 200);
    let streams = ffprobe_bytes(&data);
    assert_test_pattern(&streams);
    let (_, channels) = srv.get("/api/channels");
    assert!(channels.contains("\"live\":true"), "{channels}");
}

/// The SHA-256 fingerprint of a PEM certificate file, or of the one a TLS server presents.
fn fingerprint(source: &str) -> String {
    let pem = if source.ends_with(".pem") {
        std::fs::read(source).expect("certificate file")
    } else {
        Command::new("openssl")
            .args(["s_client", "-connect", source])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .expect("openssl s_client")
            .stdout
    };
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl x509");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&pem)
        .expect("write");
    let out = child.wait_with_output().expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn renewed_certificates_are_served_after_a_reload_and_a_bad_one_is_not() {
    let dir = temp_dir("renew");
    let (cert, key) = self_signed_cert(&dir);
    let cert = cert.display().to_string();
    // RTMPS without its own certificate uses the HTTP server's.
    let srv = TestServer::start_full(
        &format!("tls_cert = \"{cert}\"\ntls_key = \"{}\"\n", key.display()),
        "",
        &[("ONAIR__RTMP__TLS_LISTEN", "127.0.0.1:0")],
    );
    let rtmps = srv.rtmps.clone().expect("rtmps= in the address line");
    let first = fingerprint(&cert);
    assert!(first.contains("Fingerprint"), "{first}");
    assert_eq!(fingerprint(&srv.http), first);
    assert_eq!(fingerprint(&rtmps), first);

    // Renewed in place, as certbot does, then SIGHUP: new connections get the new one.
    self_signed_cert(&dir);
    let second = fingerprint(&cert);
    assert_ne!(second, first);
    srv.signal("HUP");
    wait_for(10 * SECS, "the renewed certificate on both ports", || {
        (fingerprint(&srv.http) == second && fingerprint(&rtmps) == second).then_some(())
    });

    // A broken file is refused with a warning and the last good certificate stays.
    std::fs::write(&cert, "not a certificate").expect("write");
    srv.signal("HUP");
    srv.wait_log("certificate not reloaded", 10 * SECS);
    assert_eq!(fingerprint(&srv.http), second);
    assert_eq!(fingerprint(&rtmps), second);
}
