//! Shared test harness: starts the real `onair` binary on free ports with a temporary config,
//! pushes with the ffmpeg CLI as OBS would, reads HLS with ffprobe/ffmpeg as players do.
//! Everything polls with a deadline; nothing sleeps for a fixed time to "let things settle".
#![allow(dead_code)]

pub mod api;
pub mod edge;
pub mod ertmp;
pub mod hlsjs;
pub mod rtmp;
pub mod sse;
pub mod whip;
pub mod whip_client;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Media-heavy tests take this lock so that no more than one encoder-driven test runs at a
/// time inside one test binary (2-core CI machine).
pub fn media_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub const ALICE_KEY: &str = "alice-secret-key-123";

/// Config for tests about MPEG-TS segments (they probe single segments as TS files or read
/// their `N.ts` names); the built-in default is fMP4 with low-latency parts.
pub const TS: &str = "[hls]\ncontainer = \"ts\"\n";
pub const BOB_KEY: &str = "bob-secret-key-456";

/// A running onair process.
pub struct TestServer {
    child: Child,
    pub rtmp: String,
    pub http: String,
    /// The RTMPS listener, when the config sets `rtmp.tls_listen`.
    pub rtmps: Option<String>,
    /// The WebRTC (WHIP) UDP address.
    pub webrtc: Option<String>,
    /// The SRT listener (on a free port unless the test turns SRT off).
    pub srt: Option<String>,
    logs: Arc<Mutex<String>>,
    dir: PathBuf,
    /// The config file the server was started with.
    pub config: PathBuf,
    /// Its `storage.data_dir`: inside the server's temp dir (removed with it) unless the test
    /// gave one with [`TestServer::start_in`].
    pub data_dir: PathBuf,
}

/// A TCP port free on 127.0.0.1 right now (for a server whose address must be known before
/// it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("onair-test-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

impl TestServer {
    /// Starts onair with channels alice and bob plus `extra` TOML (sections not already used).
    pub fn start(extra: &str) -> TestServer {
        Self::start_with(extra, &[])
    }

    pub fn start_with(extra: &str, env: &[(&str, &str)]) -> TestServer {
        Self::start_full("", extra, env)
    }

    /// Starts on `data_dir` (which outlives the server, so a test can start another process
    /// on the same database) with `extra` TOML as in [`TestServer::start`].
    pub fn start_in(data_dir: &Path, extra: &str) -> TestServer {
        Self::launch("", extra, &[], Some(data_dir.to_path_buf()), None)
    }

    /// As [`TestServer::start_in`], with `env` added to the server's.
    pub fn start_in_with_env(data_dir: &Path, extra: &str, env: &[(&str, &str)]) -> TestServer {
        Self::launch("", extra, env, Some(data_dir.to_path_buf()), None)
    }

    /// Starts on a free port known beforehand, with `server.public_url` pointing at it
    /// (`https://` when `tls` holds a certificate and key; sign-in callbacks need the real
    /// address): `server_keys` go in `[server]`, `alice_keys` in channel alice's table,
    /// `extra` after them.
    pub fn start_public(
        server_keys: &str,
        alice_keys: &str,
        extra: &str,
        tls: Option<(&Path, &Path)>,
        env: &[(&str, &str)],
    ) -> TestServer {
        let port = free_port();
        let (scheme, http_keys) = match tls {
            Some((cert, key)) => (
                "https",
                format!(
                    "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                    cert.display(),
                    key.display()
                ),
            ),
            None => ("http", String::new()),
        };
        let head = format!(
            "[server]\npublic_url = \"{scheme}://127.0.0.1:{port}\"\n{server_keys}\n\
[rtmp]\nlisten = \"127.0.0.1:0\"\n[webrtc]\nlisten = \"127.0.0.1:0\"\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n{http_keys}"
        );
        Self::launch_text(&head, extra, alice_keys, env, None, None)
    }

    /// Starts with HTTP on `port` (known beforehand: a cluster node's `advertise_url`), with
    /// `extra` TOML as in [`TestServer::start`] and `env` added to the server's.
    pub fn start_at(port: u16, extra: &str, env: &[(&str, &str)]) -> TestServer {
        let head = format!(
            "[rtmp]\nlisten = \"127.0.0.1:0\"\n[webrtc]\nlisten = \"127.0.0.1:0\"\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n"
        );
        Self::launch_text(&head, extra, "", env, None, None)
    }

    /// Starts with `http_keys` added to the `[http]` table.
    pub fn start_with_http(http_keys: &str) -> TestServer {
        Self::start_full(http_keys, "", &[])
    }

    /// `http_keys` go in the `[http]` table, `extra` after it; `env` is added to the server's.
    /// The database goes in the server's temp dir.
    pub fn start_full(http_keys: &str, extra: &str, env: &[(&str, &str)]) -> TestServer {
        Self::launch(http_keys, extra, env, None, None)
    }

    /// Starts as [`TestServer::start_full`] (without env), under an open-file limit of `soft`
    /// (what the process gets) and `hard` (how far it may raise it).
    pub fn start_with_open_files(http_keys: &str, extra: &str, soft: u64, hard: u64) -> TestServer {
        Self::launch(http_keys, extra, &[], None, Some((soft, hard)))
    }

    fn launch(
        http_keys: &str,
        extra: &str,
        env: &[(&str, &str)],
        data_dir: Option<PathBuf>,
        open_files: Option<(u64, u64)>,
    ) -> TestServer {
        let head = format!(
            "[rtmp]\nlisten = \"127.0.0.1:0\"\n[webrtc]\nlisten = \"127.0.0.1:0\"\n\
[http]\nlisten = \"127.0.0.1:0\"\n{http_keys}"
        );
        Self::launch_text(&head, extra, "", env, data_dir, open_files)
    }

    fn launch_text(
        head: &str,
        extra: &str,
        alice_keys: &str,
        env: &[(&str, &str)],
        data_dir: Option<PathBuf>,
        open_files: Option<(u64, u64)>,
    ) -> TestServer {
        let dir = temp_dir("srv");
        let cfg = dir.join("onair.toml");
        let data_dir = data_dir.unwrap_or_else(|| dir.join("data"));
        let storage = format!("[storage]\ndata_dir = \"{}\"\n", data_dir.display());
        let text = format!(
            "{head}{extra}\n{storage}\
[[channels]]\nname = \"alice\"\nkey = \"{ALICE_KEY}\"\ntitle = \"Alice's debate\"\n{alice_keys}\n\
[[channels]]\nname = \"bob\"\nkey = \"{BOB_KEY}\"\n"
        );
        std::fs::write(&cfg, text).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onair"));
        cmd.args(["serve", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            // SRT on a free port (the default is the fixed 8890); a test may override it.
            .env("ONAIR__SRT__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some((soft, hard)) = open_files {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: setrlimit only, between fork and exec (async-signal-safe).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("start onair");
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let l = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap_or_else(|e| e.into_inner());
                g.push_str(&line);
                g.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_else(|| {
            panic!(
                "onair printed no address line; logs:\n{}",
                logs.lock().unwrap()
            )
        });
        std::thread::spawn(move || for _ in lines {});
        let field = |name: &str| {
            first
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(String::from))
                .unwrap_or_else(|| panic!("no {name}= in {first:?}"))
        };
        let optional = |name: &str| {
            first
                .split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(String::from))
        };
        TestServer {
            rtmps: optional("rtmps"),
            srt: optional("srt"),
            webrtc: optional("webrtc"),
            rtmp: field("rtmp"),
            http: field("http"),
            child,
            logs,
            dir,
            config: cfg,
            data_dir,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the server.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig}");
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }

    pub fn rtmps_url(&self, key: &str) -> String {
        let addr = self
            .rtmps
            .as_deref()
            .expect("no rtmps= in the address line");
        format!("rtmps://{addr}/live/{key}")
    }

    /// `srt://` URL of the SRT listener with `streamid` as is (ffmpeg 5.1 passes it on without
    /// percent-decoding, `#!::…,` included) and `params` (`&passphrase=…`).
    pub fn srt_url(&self, streamid: &str, params: &str) -> String {
        let addr = self.srt.as_deref().expect("no srt= in the address line");
        format!("srt://{addr}?streamid={streamid}{params}")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the logs contain `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) {
        wait_for(within, &format!("log line {needle:?}"), || {
            self.logs().contains(needle).then_some(())
        });
    }

    /// GET returning (status, body); connection errors panic.
    pub fn get(&self, path: &str) -> (u16, String) {
        let (s, b) = self.get_bytes(path);
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        match ureq::get(&self.url(path))
            .timeout(Duration::from_secs(10))
            .call()
        {
            Ok(r) => {
                let status = r.status();
                let mut b = Vec::new();
                r.into_reader().read_to_end(&mut b).expect("body");
                (status, b)
            }
            Err(ureq::Error::Status(code, r)) => {
                (code, r.into_string().unwrap_or_default().into_bytes())
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (s, b) = self.get(path);
        assert_eq!(s, 200, "GET {path}: {b}");
        serde_json::from_str(&b).expect("json")
    }

    /// Waits until a playlist exists and lists at least `n` segments; returns it.
    pub fn wait_segments(
        &self,
        channel: &str,
        rendition: &str,
        n: usize,
        within: Duration,
    ) -> String {
        let path = format!("/hls/{channel}/{rendition}/index.m3u8");
        wait_for(within, &format!("{n} segments in {path}"), || {
            let (s, body) = self.get(&path);
            (s == 200 && count_segments(&body) >= n).then_some(body)
        })
    }

    /// Sends SIGTERM and waits for exit; returns the exit status and the time it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = wait_for(Duration::from_secs(15), "onair to exit", || {
            self.child.try_wait().ok().flatten()
        });
        (status, t.elapsed())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the peer closes `s` within `within` (EOF or an error; data read meanwhile is
/// skipped).
pub fn closed_by_peer(s: &mut std::net::TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// A self-signed certificate for 127.0.0.1 made by openssl in `dir`: (cert.pem, key.pem).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
    (cert, key)
}

/// Polls `f` until it returns Some, or panics after `within`.
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn count_segments(playlist: &str) -> usize {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXTINF"))
        .count()
}

/// (uri, duration) of every segment in a media playlist.
pub fn segments(playlist: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut dur = None;
    for l in playlist.lines() {
        if let Some(v) = l.strip_prefix("#EXTINF:") {
            dur = v
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|d| d.parse().ok());
        } else if !l.starts_with('#') && !l.is_empty() {
            out.push((l.to_string(), dur.take().unwrap_or(0.0)));
        }
    }
    out
}

/// Media sequence number in a segment or part name (`{epoch}-{msn}.ts`, `{epoch}-{msn}.m4s`,
/// `{epoch}-{msn}.{part}.m4s`).
pub fn segment_number(uri: &str) -> Option<u64> {
    let (_, rest) = uri.rsplit('/').next()?.split_once('-')?;
    rest.split('.').next()?.parse().ok()
}

pub fn tag_value(playlist: &str, tag: &str) -> Option<String> {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{tag}:")).map(String::from))
}

/// An ffmpeg pushing a 320x180 test pattern with AAC, exactly as OBS publishes (FLV over RTMP,
/// H.264 + AAC, sequence headers first), in real time.
pub struct Push {
    pub child: Child,
}

pub struct PushOpts {
    pub seconds: f64,
    pub size: &'static str,
    pub fps: u32,
    pub gop: u32,
    pub audio: bool,
    pub video: bool,
    pub video_kbps: u32,
}

impl Default for PushOpts {
    fn default() -> Self {
        Self {
            seconds: 8.0,
            size: "320x180",
            fps: 30,
            gop: 60,
            audio: true,
            video: true,
            video_kbps: 400,
        }
    }
}

/// ffmpeg arguments for `opts`' test pattern (lavfi testsrc and a sine tone) encoded as OBS
/// would (x264 with a fixed GOP, AAC), up to but not including the output.
pub fn test_pattern_args(opts: &PushOpts) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut add = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
    if opts.video {
        let src = format!("testsrc=size={}:rate={}", opts.size, opts.fps);
        add(&["-f", "lavfi", "-i", &src]);
    }
    if opts.audio {
        add(&["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]);
    }
    add(&["-t", &opts.seconds.to_string()]);
    if opts.video {
        let g = opts.gop.to_string();
        let rate = format!("{}k", opts.video_kbps);
        add(&[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-g",
            &g,
            "-keyint_min",
            &g,
            "-sc_threshold",
            "0",
            "-b:v",
            &rate,
        ]);
    }
    if opts.audio {
        add(&["-c:a", "aac", "-b:a", "64k", "-ac", "2"]);
    }
    a
}

/// Runs `cmd` (ffmpeg, openssl, ...) to completion; panics with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn push(url: &str, opts: PushOpts) -> Push {
    push_as(
        url,
        opts,
        &["-flvflags", "no_duration_filesize", "-f", "flv"],
    )
}

/// The test pattern in MPEG-TS to an `srt://` URL, as OBS's SRT output sends it.
pub fn push_srt(url: &str, opts: PushOpts) -> Push {
    push_as(url, opts, &["-f", "mpegts"])
}

fn push_as(url: &str, opts: PushOpts, format: &[&str]) -> Push {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(test_pattern_args(&opts))
        .args(format)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Push {
        child: cmd.spawn().expect("ffmpeg (install it: scripts/test does)"),
    }
}

impl Push {
    /// Waits for ffmpeg to finish; returns success and its stderr.
    pub fn wait(mut self, within: Duration) -> (bool, String) {
        let status = wait_for(within, "ffmpeg push to finish", || {
            self.child.try_wait().ok().flatten()
        });
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.success(), err)
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asserts that `streams` are the default test push: H.264 at 320x180 and AAC.
pub fn assert_test_pattern(streams: &[ProbedStream]) {
    assert!(
        streams
            .iter()
            .any(|s| s.codec_name == "h264" && s.width == Some(320) && s.height == Some(180)),
        "{streams:?}"
    );
    assert!(streams.iter().any(|s| s.codec_name == "aac"), "{streams:?}");
}

/// ffprobe's view of a media file's streams: (codec_type, codec_name, width, height, start_time).
#[derive(Debug, Clone)]
pub struct ProbedStream {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub start_time: Option<f64>,
}

pub fn ffprobe_bytes(data: &[u8]) -> Vec<ProbedStream> {
    let dir = temp_dir("probe");
    let f = dir.join("seg.ts");
    std::fs::write(&f, data).expect("write segment");
    let out = ffprobe_url(f.to_str().expect("path"));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

pub fn ffprobe_url(url: &str) -> Vec<ProbedStream> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json", url])
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    v["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| ProbedStream {
            codec_type: s["codec_type"].as_str().unwrap_or("").to_string(),
            codec_name: s["codec_name"].as_str().unwrap_or("").to_string(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
            start_time: s["start_time"].as_str().and_then(|t| t.parse().ok()),
        })
        .collect()
}

/// Decodes a URL fully with ffmpeg (as a player would); returns success and stderr.
pub fn ffmpeg_decode(url: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-nostdin"])
        .args(extra)
        .args(["-i", url, "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes raw bytes to a TCP address and reads whatever comes back until close or timeout.
pub fn tcp_garbage(addr: &str, data: &[u8]) {
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = s.write_all(data);
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs the onair binary once (from the crate directory, logs at warn) and returns its exit
/// code, stdout and stderr.
pub fn onair(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onair"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn");
    // `serve` opens the database: in a temp dir, never `data/` in the repository (the
    // caller's env wins).
    let data = temp_dir("cli-data");
    if args.first() == Some(&"serve") {
        cmd.env("ONAIR__STORAGE__DATA_DIR", &data);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run onair");
    let _ = std::fs::remove_dir_all(&data);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Decodes alice's recording `id` from /vod with ffmpeg; returns the seconds of video decoded.
pub fn decoded_seconds(srv: &TestServer, id: &str) -> f64 {
    let url = srv.url(&format!("/vod/alice/{id}/master.m3u8"));
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "info", "-i", &url])
        .args(["-map", "0:v:0", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg could not play the VOD: {err}");
    // The last progress line: "frame=  600 fps=... time=00:00:20.00 ..."
    let t = err
        .rsplit("time=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("");
    let parts: Vec<f64> = t.split(':').filter_map(|p| p.parse().ok()).collect();
    assert_eq!(parts.len(), 3, "no time= in ffmpeg output: {err}");
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}
