//! Loading, environment overrides, validation messages and redaction of the whole config.

use super::*;
use std::io::Write;

fn file(text: &str) -> tempfile_like::TempToml {
    tempfile_like::TempToml::new(text)
}

/// A tiny temp-file helper; the std library has none and a dev-dependency is not worth it.
mod tempfile_like {
    use super::*;
    pub struct TempToml(pub PathBuf);
    impl TempToml {
        pub fn new(text: &str) -> Self {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("onair-cfg-{}-{n}.toml", std::process::id()));
            let mut f = std::fs::File::create(&p).expect("temp file");
            f.write_all(text.as_bytes()).expect("write temp file");
            Self(p)
        }
    }
    impl Drop for TempToml {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().expect("defaults validate");
}

#[test]
fn shipped_config_is_valid() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let cfg = Config::load_with_env(Some(&p), vec![]).expect("shipped config loads");
    assert!(!cfg.channels.is_empty());
}

/// The shipped limits fit the scale they advertise (issue 19): one channel's chat can fill
/// `chat.max_subscribers` with event streams, which have a budget of their own
/// (`http.max_event_streams`, so they never take `http.max_connections` from playlists, posts
/// and the API), and config/default.toml says the same numbers as the built-in defaults.
#[test]
fn default_limits_fit_the_advertised_scale() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let shipped = Config::load_with_env(Some(&p), vec![]).expect("shipped config loads");
    let built_in = Config::default();
    for (which, cfg) in [("built-in", &built_in), ("shipped", &shipped)] {
        assert!(
            cfg.http.max_event_streams >= cfg.chat.max_subscribers,
            "{which}: http.max_event_streams ({}) below chat.max_subscribers ({})",
            cfg.http.max_event_streams,
            cfg.chat.max_subscribers
        );
    }
    let keys = |c: &Config| {
        (
            c.http.max_connections,
            c.http.max_event_streams,
            c.chat.max_subscribers,
            c.chat.max_subscribers_per_address,
            c.rtmp.max_connections,
        )
    };
    assert_eq!(keys(&shipped), keys(&built_in));
}

#[test]
fn env_overrides_file() {
    let f = file("[http]\nlisten = \"127.0.0.1:1000\"\n");
    let cfg = Config::load_with_env(
        Some(&f.0),
        vec![
            ("ONAIR__HTTP__LISTEN".into(), "127.0.0.1:9000".into()),
            ("ONAIR__HLS__SEGMENT_SECONDS".into(), "4".into()),
            (
                "ONAIR__WEBRTC__PUBLIC_ADDRESSES".into(),
                "203.0.113.7,2001:db8::1".into(),
            ),
        ],
    )
    .expect("loads");
    assert_eq!(cfg.http.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(cfg.hls.segment_seconds, 4.0);
    // A container sets the address browsers reach from its environment.
    let want: Vec<std::net::IpAddr> = vec![
        "203.0.113.7".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
    ];
    assert_eq!(cfg.webrtc.public_addresses, want);
}

#[test]
fn errors_name_key_value_and_allowed() {
    let cases = [
        ("[hls]\nsegment_seconds = 100\n", "hls.segment_seconds"),
        ("[hls]\ncontainer = \"mkv\"\n", "container"),
        (
            "[[channels]]\nname = \"a b\"\nkey = \"0123456789\"\n",
            "channels[0].name",
        ),
        (
            "[[channels]]\nname = \"ab\"\nkey = \"short\"\n",
            "channels[0].key",
        ),
        ("[rtmp]\nlisten = \"nowhere\"\n", "rtmp.listen"),
        ("[webrtc]\nmax_sessions = 0\n", "webrtc.max_sessions"),
        (
            "[webrtc]\npublic_addresses = [\"0.0.0.0\"]\n",
            "webrtc.public_addresses",
        ),
        (
            "[webrtc]\nconvert_preset = \"turbo\"\n",
            "webrtc.convert_preset",
        ),
        ("[webrtc]\naudio_kbps = 4\n", "webrtc.audio_kbps"),
        ("[srt]\nlisten = \"8890\"\n", "srt.listen"),
        ("[srt]\nlatency_ms = 60000\n", "srt.latency_ms"),
        ("[srt]\npassphrase = \"short\"\n", "srt.passphrase"),
        ("[srt]\nno_media_timeout_seconds = 0\n", "srt.no_media_timeout_seconds"),
        ("[bogus]\nx = 1\n", "bogus"),
        (
            "[transcode]\nmax_lag_seconds = 0\n",
            "transcode.max_lag_seconds",
        ),
        (
            "[[transcode.ladder]]\nname = \"a\"\nheight = 360\nvideo_kbps = 800\naudio_kbps = 64\nprofile = \"high10\"\n",
            "transcode.ladder[0].profile",
        ),
        (
            "[[transcode.ladder]]\nname = \"a\"\nheight = 360\nvideo_kbps = 800\naudio_kbps = 64\nmax_fps = 0\n",
            "transcode.ladder[0].max_fps",
        ),
        ("[storage]\ndata_dir = \"\"\n", "storage.data_dir"),
    ];
    for (text, key) in cases {
        let f = file(text);
        let err = Config::load_with_env(Some(&f.0), vec![]).expect_err(text);
        let msg = err.to_string();
        assert!(msg.contains(key), "{text:?} gave {msg:?}");
    }
}

#[test]
fn srt_can_be_turned_off_and_its_passphrase_is_redacted() {
    let f = file("[srt]\nlisten = \"\"\npassphrase = \"a-long-passphrase\"\n");
    let cfg = Config::load_with_env(Some(&f.0), vec![]).expect("loads");
    assert_eq!(cfg.srt.listen_addr(), None);
    assert!(!cfg.to_redacted_toml().contains("a-long-passphrase"));
    assert_eq!(
        Config::default().srt.listen_addr(),
        Some(([0, 0, 0, 0], 8890).into())
    );
}

#[test]
fn key_from_environment_and_redaction() {
    let f = file("[[channels]]\nname = \"alice\"\nkey_env = \"ALICE_KEY\"\n");
    let cfg = Config::load_with_env(
        Some(&f.0),
        vec![("ALICE_KEY".into(), "supersecretkey".into())],
    )
    .expect("loads");
    assert_eq!(cfg.channels[0].key.expose(), "supersecretkey");
    let shown = cfg.to_redacted_toml();
    assert!(!shown.contains("supersecretkey"));
    assert!(shown.contains("<redacted>"));
    assert!(!format!("{cfg:?}").contains("supersecretkey"));
}

#[test]
fn announce_secrets_from_environment_are_redacted() {
    let f = file(
        "[announce.twitter]\nenabled = true\nconsumer_key = \"ck-from-file\"\n\
         [[announce.webhooks]]\nurl = \"https://discord.example/api/webhooks/1/tok3n\"\n\
         secret_env = \"HOOK_SECRET\"\n",
    );
    let cfg = Config::load_with_env(
        Some(&f.0),
        vec![
            (
                "ONAIR__ANNOUNCE__TWITTER__CONSUMER_SECRET".into(),
                "cs-from-env".into(),
            ),
            (
                "ONAIR__ANNOUNCE__TWITTER__ACCESS_TOKEN".into(),
                "1234567".into(),
            ),
            (
                "ONAIR__ANNOUNCE__TWITTER__ACCESS_TOKEN_SECRET".into(),
                "ats-from-env".into(),
            ),
            ("HOOK_SECRET".into(), "hook-secret-value".into()),
        ],
    )
    .expect("loads");
    let t = &cfg.announce.twitter;
    assert_eq!(t.consumer_key.expose(), "ck-from-file");
    assert_eq!(t.consumer_secret.expose(), "cs-from-env");
    assert_eq!(t.access_token.expose(), "1234567");
    assert_eq!(
        cfg.announce.webhooks[0].secret.expose(),
        "hook-secret-value"
    );
    let shown = format!("{}{cfg:?}", cfg.to_redacted_toml());
    for secret in [
        "ck-from-file",
        "cs-from-env",
        "1234567",
        "ats-from-env",
        "hook-secret-value",
        "tok3n",
    ] {
        assert!(!shown.contains(secret), "{secret} shown");
    }
}

#[test]
fn announce_errors_name_the_key() {
    let cases = [
        (
            "[announce.twitter]\nenabled = true\n",
            "announce.twitter.consumer_key",
        ),
        (
            "[announce.mastodon]\nenabled = true\ninstance_url = \"mastodon.social\"\n",
            "announce.mastodon.instance_url",
        ),
        (
            "[announce.mastodon]\nenabled = true\ninstance_url = \"https://m.example\"\n",
            "ONAIR__ANNOUNCE__MASTODON__ACCESS_TOKEN",
        ),
        (
            "[announce.mastodon]\nvisibility = \"everyone\"\n",
            "announce.mastodon.visibility",
        ),
        (
            "[announce]\ntemplate = \"{channel} {key}\"\n",
            "announce.template",
        ),
        ("[announce]\ntries = 0\n", "announce.tries"),
        (
            "[announce]\ntimeout_seconds = 0\n",
            "announce.timeout_seconds",
        ),
        (
            "[announce.bluesky]\nenabled = true\napp_password = \"x\"\n",
            "announce.bluesky.identifier",
        ),
        (
            "[[announce.webhooks]]\nurl = \"ftp://x\"\n",
            "announce.webhooks[0].url",
        ),
        (
            "[[announce.webhooks]]\nurl = \"http://x\"\nformat = \"slack\"\n",
            "announce.webhooks[0].format",
        ),
        (
            "[[announce.webhooks]]\nurl = \"http://x\"\nname = \"twitter\"\n",
            "announce.webhooks[0].name",
        ),
        (
            "[[announce.webhooks]]\nurl = \"http://x\"\nsecret_env = \"NOPE_UNSET\"\n",
            "announce.webhooks[0].secret_env",
        ),
    ];
    for (text, key) in cases {
        let f = file(text);
        let err = Config::load_with_env(Some(&f.0), vec![]).expect_err(text);
        let msg = err.to_string();
        assert!(msg.contains(key), "{text:?} gave {msg:?}");
    }
    assert_eq!(unknown_placeholder("{channel} {title} {url}"), None);
    assert_eq!(
        unknown_placeholder("{stream_key}"),
        Some("stream_key".into())
    );
    assert_eq!(unknown_placeholder("open {brace"), Some("brace".into()));
}
