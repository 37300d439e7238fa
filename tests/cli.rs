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
