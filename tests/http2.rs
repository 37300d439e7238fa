//! HTTP/2: h2c on the plain listener, and TLS (rustls, certificate from files) with HTTP/2 by
//! ALPN, checked with curl and ffprobe as real clients.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const SECS: Duration = Duration::from_secs(1);

/// curl's view of a request: (HTTP version, status).
fn curl(args: &[&str], url: &str) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (v, s) = text.split_once(' ').unwrap_or(("", ""));
    (v.to_string(), s.to_string())
}

#[test]
fn h2c_on_the_plain_listener() {
    let srv = TestServer::start("");
    let (version, status) = curl(&["--http2-prior-knowledge"], &srv.url("/healthz"));
    assert_eq!((version.as_str(), status.as_str()), ("2", "200"));
    let (version, status) = curl(&[], &srv.url("/api/channels"));
    assert_eq!((version.as_str(), status.as_str()), ("1.1", "200"));
}

#[test]
fn tls_with_http2_by_alpn() {
    let _g = media_lock();
    let dir = temp_dir("tls");
    let (cert, key) = self_signed_cert(&dir);
    let extra = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    // The [http] table is opened by the harness: append its keys there.
    let srv = TestServer::start_with_http(&extra);
    let https = |path: &str| format!("https://{}{path}", srv.http);
    let (version, status) = curl(&["-k", "--http2"], &https("/healthz"));
    assert_eq!((version.as_str(), status.as_str()), ("2", "200"));
    let (version, status) = curl(&["-k", "--http1.1"], &https("/healthz"));
    assert_eq!((version.as_str(), status.as_str()), ("1.1", "200"));
    // Plain HTTP on a TLS port is refused, not served.
    let (_, status) = curl(&[], &srv.url("/healthz"));
    assert_ne!(status, "200");

    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 6.0,
            ..Default::default()
        },
    );
    wait_for(30 * SECS, "a segment over TLS", || {
        let out = Command::new("curl")
            .args(["-sk", &https("/hls/alice/source/index.m3u8")])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("#EXTINF")
            .then_some(())
    });
    let streams = ffprobe_url(&https("/hls/alice/master.m3u8"));
    assert!(
        streams.iter().any(|s| s.codec_name == "h264"),
        "{streams:?}"
    );
}
