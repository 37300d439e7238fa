//! The embedded database against the real binary: bans outlive a restart through
//! `{storage.data_dir}/onair.sqlite3`, a SIGKILL in the middle of writes leaves a readable
//! database holding every acknowledged ban, an older version's `chat.bans_file` is imported
//! exactly once, and `storage.data_dir` is shown by `check-config` and checked at start.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::{admin, post_chat, request, ADMIN_TOKEN};
use common::*;
use serde_json::{json, Value};

const SECS: Duration = Duration::from_secs(1);
const BANS: &str = "/api/admin/channels/alice/bans";

fn config() -> String {
    format!(
        "[server]\nadmin_token = \"{ADMIN_TOKEN}\"\n[chat]\ntrusted_proxies = [\"127.0.0.1\"]\n"
    )
}

fn listed(srv: &TestServer) -> Value {
    let a = admin(srv, "GET", BANS, None);
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body
}

/// `PRAGMA integrity_check` and the recorded schema versions, read with SQLite itself.
fn check_database(data_dir: &Path) -> (String, Vec<(i64, String)>) {
    let path = data_dir.join("onair.sqlite3");
    let conn = rusqlite::Connection::open(&path).expect("open the database file");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    let mut stmt = conn
        .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .expect("schema_migrations");
    let versions = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    (integrity, versions)
}

#[test]
fn bans_survive_a_restart_through_the_database() {
    let data = temp_dir("db-restart");
    let via = [("X-Forwarded-For", "198.51.100.7")];
    let msg = json!({"nick": "someone", "text": "hi"}).to_string();
    let chat = "/api/channels/alice/chat";
    {
        let mut srv = TestServer::start_in(&data, &config());
        assert_eq!(listed(&srv), json!({"nicks": [], "addresses": []}));
        for body in [json!({"nick": "Troll"}), json!({"address": "198.51.100.7"})] {
            let a = admin(&srv, "POST", BANS, Some(body));
            assert_eq!(a.status, 200, "{:?}", a.body);
        }
        assert!(data.join("onair.sqlite3").is_file());
        let (status, _) = srv.terminate();
        assert!(status.success(), "{status:?}");
    }
    // A clean stop leaves one self-contained file.
    assert!(!data.join("onair.sqlite3-wal").exists());
    let (integrity, versions) = check_database(&data);
    assert_eq!(integrity, "ok");
    assert!(!versions.is_empty(), "migrations recorded");

    let srv = TestServer::start_in(&data, &config());
    assert_eq!(
        listed(&srv),
        json!({"nicks": ["troll"], "addresses": ["198.51.100.7"]})
    );
    assert_eq!(post_chat(&srv, "alice", "TROLL", "back again").status, 403);
    assert_eq!(request(&srv, "POST", chat, Some(&msg), &via).status, 403);
    assert_eq!(post_chat(&srv, "alice", "ann", "hello").status, 202);
    // Lifting one is saved too, and the restart does not need a clean stop.
    let a = admin(&srv, "DELETE", BANS, Some(json!({"nick": "troll"})));
    assert_eq!(a.status, 200, "{:?}", a.body);
    drop(srv); // SIGKILL
    let srv = TestServer::start_in(&data, &config());
    assert_eq!(
        listed(&srv),
        json!({"nicks": [], "addresses": ["198.51.100.7"]})
    );
    assert_eq!(post_chat(&srv, "alice", "troll", "sorry").status, 202);
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn sigkill_while_bans_are_written_keeps_every_acknowledged_ban() {
    let data = temp_dir("db-sigkill");
    let srv = TestServer::start_in(&data, &config());
    let srv = Arc::new(Mutex::new(srv));
    let http = srv.lock().expect("lock").http.clone();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    // Two admins banning as fast as the server answers, so that writes are in flight (queued
    // or committing) when the process dies.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (acked, stop, http) = (acked.clone(), stop.clone(), http.clone());
            std::thread::spawn(move || {
                let auth = format!("Bearer {ADMIN_TOKEN}");
                let agent = ureq::AgentBuilder::new().timeout(10 * SECS).build();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let nick = format!("w{w}n{i}");
                    let r = agent
                        .post(&format!("http://{http}{BANS}"))
                        .set("Authorization", &auth)
                        .send_json(json!({ "nick": nick }));
                    match r {
                        Ok(resp) if resp.status() == 200 => acked.lock().expect("lock").push(nick),
                        Ok(resp) => panic!("ban answered {}", resp.status()),
                        Err(ureq::Error::Status(code, _)) => panic!("ban answered {code}"),
                        // The server died: nothing more gets through.
                        Err(ureq::Error::Transport(_)) => break,
                    }
                }
            })
        })
        .collect();
    wait_for(60 * SECS, "60 acknowledged bans", || {
        (acked.lock().expect("lock").len() >= 60).then_some(())
    });
    {
        let mut s = srv.lock().expect("lock");
        s.signal("KILL");
        wait_for(10 * SECS, "the server to die", || {
            (!s.running()).then_some(())
        });
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();

    let (integrity, _) = check_database(&data);
    assert_eq!(integrity, "ok", "after SIGKILL");
    drop(srv);
    let srv = TestServer::start_in(&data, &config());
    let nicks = listed(&srv)["nicks"]
        .as_array()
        .expect("nicks")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect::<std::collections::HashSet<_>>();
    eprintln!(
        "acknowledged before the kill: {}; in the database after it: {}",
        acked.len(),
        nicks.len()
    );
    let lost: Vec<_> = acked.iter().filter(|n| !nicks.contains(*n)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    // At most the requests in flight at the kill were committed without an answer.
    assert!(
        nicks.len() >= acked.len(),
        "{} {}",
        nicks.len(),
        acked.len()
    );
    assert_eq!(post_chat(&srv, "alice", &acked[0], "x").status, 403);
    drop(srv);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_bans_file_from_the_previous_version_is_imported_once() {
    let dir = temp_dir("db-import");
    let data = dir.join("data");
    let file = dir.join("bans.json");
    // As the previous version wrote it.
    let old = "{\n  \"alice\": {\n    \"nicks\": [\n      \"troll\"\n    ],\n    \"addresses\": [\n      \"198.51.100.7\"\n    ]\n  }\n}\n";
    std::fs::write(&file, old).expect("write bans file");
    let cfg = format!("{}bans_file = \"{}\"\n", config(), file.display());
    let srv = TestServer::start_in(&data, &cfg);
    // The log lines were written before the address line; the reader thread may lag.
    srv.wait_log("chat.bans_file is deprecated", 10 * SECS);
    srv.wait_log("imported into the database", 10 * SECS);
    let logs = srv.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("chat.bans_file is deprecated"));
    assert!(warning.is_some_and(|l| l.contains("WARN")), "{logs}");
    assert_eq!(
        listed(&srv),
        json!({"nicks": ["troll"], "addresses": ["198.51.100.7"]})
    );
    assert_eq!(post_chat(&srv, "alice", "troll", "hi").status, 403);
    let a = admin(&srv, "DELETE", BANS, Some(json!({"nick": "troll"})));
    assert_eq!(a.status, 200, "{:?}", a.body);
    drop(srv);

    // The file comes back as the previous version left it (a downgrade and upgrade, a
    // restored backup): it was imported once, so the lifted ban stays lifted.
    std::fs::write(&file, old).expect("write bans file");
    let srv = TestServer::start_in(&data, &cfg);
    srv.wait_log("imported before; not read again", 10 * SECS);
    srv.wait_log("chat.bans_file is deprecated", 10 * SECS);
    assert_eq!(
        listed(&srv),
        json!({"nicks": [], "addresses": ["198.51.100.7"]})
    );
    assert_eq!(post_chat(&srv, "alice", "troll", "sorry").status, 202);
    // While the key is set the file follows the database, for an older onair's sake.
    let a = admin(&srv, "POST", BANS, Some(json!({"nick": "Other"})));
    assert_eq!(a.status, 200, "{:?}", a.body);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("bans file")).expect("json");
    assert_eq!(
        saved,
        json!({"alice": {"nicks": ["other"], "addresses": ["198.51.100.7"]}})
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_shows_storage_data_dir() {
    // The shipped default.
    let (code, out, err) = onair(&["check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[storage]\ndata_dir = \"data\"\n"), "{out}");
    let (code, out, err) = onair(
        &["check-config"],
        &[("ONAIR__STORAGE__DATA_DIR", "/var/lib/onair")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("[storage]\ndata_dir = \"/var/lib/onair\"\n"),
        "{out}"
    );
    let (code, _, err) = onair(&["check-config"], &[("ONAIR__STORAGE__DATA_DIR", "")]);
    assert_eq!(code, 2);
    assert!(err.contains("storage.data_dir"), "{err}");
}

#[test]
fn an_unusable_data_dir_or_a_newer_database_stops_the_start() {
    let dir = temp_dir("db-refused");
    let config = dir.join("onair.toml");
    std::fs::write(
        &config,
        "[rtmp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("write config");
    let config = config.to_str().expect("path");
    // Under a regular file: no directory can be made there, not even by root.
    std::fs::write(dir.join("file"), b"").expect("write file");
    let bad = dir.join("file/data");
    let bad = bad.to_str().expect("path");
    let (code, out, err) = onair(
        &["serve", "--config", config],
        &[("ONAIR__STORAGE__DATA_DIR", bad)],
    );
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("onair listening"), "{out}");
    let line = err
        .lines()
        .find(|l| l.contains("storage.data_dir"))
        .unwrap_or_else(|| panic!("no line naming storage.data_dir: {err}"));
    assert!(line.contains(bad), "{line}");

    // A database written by a newer onair (a schema version this one does not know).
    let data = dir.join("newer");
    let data_str = data.to_str().expect("path");
    std::fs::create_dir_all(&data).expect("mkdir");
    {
        let conn = rusqlite::Connection::open(data.join("onair.sqlite3")).expect("open");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
             applied_at TEXT NOT NULL) STRICT;\
             INSERT INTO schema_migrations VALUES (9999, 'from_the_future', 'later');",
        )
        .expect("create");
    }
    let (code, out, err) = onair(
        &["serve", "--config", config],
        &[("ONAIR__STORAGE__DATA_DIR", data_str)],
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("schema version 9999") && err.contains("newer than this onair"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
