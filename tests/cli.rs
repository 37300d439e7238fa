//! The command line as admins use it: `check-config` and `serve` with bad configuration.

mod common;

use common::onair;

#[test]
fn check_config_prints_effective_settings_with_secrets_redacted() {
    let (code, out, err) = onair(
        &["check-config"],
        &[
            ("ONAIR__HTTP__LISTEN", "127.0.0.1:9000"),
            ("ONAIR__SERVER__ADMIN_TOKEN", "very-secret-admin-token"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:9000\""), "{out}");
    assert!(out.contains("<redacted>"));
    assert!(!out.contains("very-secret-admin-token"));
    assert!(
        !out.contains("demo-stream-key-change-me"),
        "shipped demo key printed"
    );
}

#[test]
fn invalid_config_names_key_value_and_allowed_with_exit_2() {
    let dir = common::temp_dir("cli");
    let cases = [
        ("[hls]\ncontainer = \"mkv\"\n", "container"),
        ("[hls]\nsegment_seconds = 0.1\n", "hls.segment_seconds"),
        ("[rtmp]\napp = \"li/ve\"\n", "rtmp.app"),
        // RTMPS without any certificate, and a certificate without its key.
        (
            "[rtmp]\ntls_listen = \"127.0.0.1:1936\"\n",
            "rtmp.tls_listen",
        ),
        ("[rtmp]\ntls_cert = \"/x.pem\"\n", "rtmp.tls_key"),
    ];
    for (text, key) in cases {
        let f = dir.join("bad.toml");
        std::fs::write(&f, text).expect("write");
        for cmd in ["check-config", "serve"] {
            let (code, _, err) = onair(&[cmd, "--config", f.to_str().expect("path")], &[]);
            assert_eq!(code, 2, "{cmd} {text:?}: {err}");
            assert!(err.contains(key), "{cmd} {text:?}: {err}");
        }
    }
    // A certificate that cannot be read stops `serve` with the key and the path.
    let f = dir.join("tls.toml");
    std::fs::write(
        &f,
        "[rtmp]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n\
         tls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let (code, _, err) = onair(&["serve", "--config", f.to_str().expect("path")], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("rtmp.tls_cert") && err.contains("/nonexistent/c.pem"),
        "{err}"
    );
    let (code, _, err) = onair(&["check-config", "--config", "/nonexistent.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.toml"));
    let (code, _, err) = onair(&["check-config"], &[("ONAIR__HLS__PLAYLIST_WINDOW", "1")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("hls.playlist_window") && err.contains("2 to 100"),
        "{err}"
    );
}
