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

/// `check-config` says when the connection budgets do not fit the open-file limit `serve`
/// will have, and what `serve` will do about it.
#[test]
fn check_config_warns_when_the_budgets_exceed_the_open_file_limit() {
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 1024 && exec \"$0\" check-config"])
        .arg(env!("CARGO_BIN_EXE_onair"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run onair under sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("http.max_event_streams (20000)")
            && err.contains("the open-file limit is 1024")
            && err.contains("serve will lower http.max_event_streams to 1"),
        "{err}"
    );
    // With room enough, nothing to say.
    let (code, _, err) = common::onair(
        &["check-config"],
        &[
            ("ONAIR__HTTP__MAX_EVENT_STREAMS", "100"),
            ("ONAIR__HTTP__MAX_CONNECTIONS", "100"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("open-file limit"), "{err}");
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

/// `scripts/run` builds and starts the binary where cargo puts it, not in `./target/release`:
/// here `CARGO_TARGET_DIR` is relative to the caller's directory (a temporary one, so the script
/// must resolve it before changing to the repository) and leads to the test build's own target
/// directory, where a dev-profile build is nearly fresh (`ONAIR_PROFILE=dev`).
#[test]
fn scripts_run_starts_the_binary_from_cargo_target_dir() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_onair"));
    let target = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir of the test build");
    let dir = common::temp_dir("run");
    // `../../..` up to `/` from the temporary directory, then down to the target directory.
    let up = "../".repeat(dir.components().count() - 1);
    let relative = format!(
        "{up}{}",
        target.display().to_string().trim_start_matches('/')
    );
    let cfg = dir.join("onair.toml");
    std::fs::write(
        &cfg,
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[channels]]\nname = \"demo\"\nkey = \"run-test-key-123\"\n",
    )
    .expect("write config");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/run");
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(script);
    // As a user's shell would start it: without what cargo sets for test processes (those
    // variables would make the nested build redo crates whose build scripts watch them).
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k.starts_with("CARGO_") && k != "CARGO_HOME") || k == "LD_LIBRARY_PATH" || k == "CARGO"
        {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &relative)
        .env("ONAIR_PROFILE", "dev")
        .env("ONAIR_CONFIG", &cfg)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start scripts/run");
    // The script's whole process group (cargo, then the server it execs) ends with the test.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-s", "TERM", "--", &format!("-{}", self.0.id())])
                .status();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("stdout");
    let guard = Kill(child);
    // The banner, then the server's own address line; the reader ends when the process does.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let mut seen = Vec::new();
    let http = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no address line from scripts/run; printed:\n{seen:#?}"));
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
        {
            break addr.to_string();
        }
        seen.push(line);
    };
    let binary = seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("Binary:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no Binary: line in {seen:#?}"));
    let expected = target.join("debug/onair");
    assert_eq!(std::path::Path::new(binary), expected, "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("run-test-key-123")),
        "{seen:#?}"
    );
    let r = ureq::get(&format!("http://{http}/healthz"))
        .timeout(std::time::Duration::from_secs(10))
        .call()
        .expect("healthz");
    assert_eq!(r.status(), 200);
    drop(guard);
}
