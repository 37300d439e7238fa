//! onair behind Debian's nginx with the shipped `deploy/nginx-edge.conf` (templated only for
//! its port, upstream and cache directory): players through the edge (ffprobe, ffmpeg and
//! hls.js-style blocking reloads over HTTP), objects served from the cache, many viewers of
//! one blocking reload making one request to onair, no playlist kept past its max-age, and a
//! new broadcast on the channel never given the old one's cached objects.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::edge::{fetch, nginx_installed, Edge};
use common::*;

const SECS: Duration = Duration::from_secs(1);
/// 2 s segments of two 1 s parts: plain playlists may be kept one second.
const LL_1S: &str =
    "[hls]\ncontainer = \"fmp4\"\nsegment_seconds = 2.0\npart_seconds = 1.0\nplaylist_window = 6\n";

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(',')
        .find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| k.ends_with(name))
                .map(|(_, v)| v)
        })
        .map(|v| v.trim_matches('"'))
}

/// (epoch, msn, part) of the preload hint (`{epoch}-{msn}.{part}.m4s`).
fn hint(p: &str) -> (String, u64, u64) {
    let line = p
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap_or_else(|| panic!("no preload hint in {p}"));
    let uri = attr(line, "URI").expect("URI");
    let (epoch, rest) = uri.split_once('-').expect("epoch-msn.part.m4s");
    let (m, part) = rest
        .trim_end_matches(".m4s")
        .split_once('.')
        .expect("msn.part");
    (
        epoch.to_string(),
        m.parse().expect("msn"),
        part.parse().expect("part"),
    )
}

/// URIs of the parts a playlist lists.
fn part_uris(p: &str) -> Vec<String> {
    p.lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| attr(l, "URI").map(String::from))
        .collect()
}

/// onair's count of HTTP requests of a route with status 200 (from /metrics).
fn served(srv: &TestServer, route: &str) -> u64 {
    let (_, text) = srv.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with("onair_http_requests_total{"))
        .filter(|l| l.contains(&format!("route=\"{route}\"")) && l.contains("status=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `n` clients GET `url` at the same moment; returns their answers.
fn burst(url: &str, n: usize) -> Vec<common::edge::Answer> {
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (url, start) = (url.to_string(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                fetch(&url)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

/// A low-latency player as hls.js plays through the edge: from the plain playlist on, a
/// blocking reload for the hinted part, then every newly listed part; returns the parts in
/// the order they were fetched.
fn follow_parts(edge: &Edge, parts: usize) -> Vec<String> {
    let base = "/hls/alice/source/";
    let first = edge.get(&format!("{base}index.m3u8"));
    assert_eq!(first.status, 200);
    let mut seen: HashSet<String> = part_uris(&first.text()).into_iter().collect();
    let mut fetched = Vec::new();
    let mut playlist = first.text();
    while fetched.len() < parts {
        let (_, msn, part) = hint(&playlist);
        let a = edge.get(&format!("{base}index.m3u8?_HLS_msn={msn}&_HLS_part={part}"));
        assert_eq!(a.status, 200, "blocking reload: {}", a.text());
        playlist = a.text();
        for uri in part_uris(&playlist) {
            if seen.insert(uri.clone()) {
                let p = edge.get(&format!("{base}{uri}"));
                assert_eq!(p.status, 200, "{uri}");
                assert_eq!(&p.body[4..8], b"moof", "{uri}");
                assert!(
                    p.header("cache-control")
                        .unwrap_or("")
                        .contains("immutable"),
                    "{:?}",
                    p.headers
                );
                fetched.push(uri);
            }
        }
    }
    fetched
}

#[test]
fn players_through_the_edge_are_served_from_its_cache() {
    if !nginx_installed() {
        panic!("nginx is not installed: scripts/test installs scripts/packages-test.txt");
    }
    let _g = media_lock();
    let srv = TestServer::start(LL_1S);
    let edge = Edge::start(&srv.http);
    let _p = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 60.0,
            gop: 30,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 2, 30 * SECS);

    // Players decode through the edge.
    assert_test_pattern(&ffprobe_url(&edge.url("/hls/alice/master.m3u8")));
    let (ok, err) = ffmpeg_decode(&edge.url("/hls/alice/master.m3u8"), &["-t", "2"]);
    assert!(ok, "{err}");

    // Headers: plain playlists one part at most, media immutable, never a cookie.
    let pl = edge.get("/hls/alice/source/index.m3u8");
    assert_eq!(pl.status, 200);
    assert_eq!(pl.header("cache-control"), Some("public, max-age=1"));
    assert!(pl.header("x-cache-status").is_some(), "{:?}", pl.headers);
    let master = edge.get("/hls/alice/master.m3u8");
    assert_eq!(master.header("cache-control"), Some("public, max-age=1"));
    let text = pl.text();
    let map = tag_value(&text, "#EXT-X-MAP").expect("map");
    let init = attr(&map, "URI").expect("init").to_string();
    let seg = segments(&text).first().expect("a segment").0.clone();
    let part = part_uris(&text).first().expect("a part").clone();
    for name in [&init, &seg, &part] {
        let uri = format!("/hls/alice/source/{name}");
        let answers: Vec<_> = (0..20).map(|_| edge.get(&uri)).collect();
        for a in &answers {
            assert_eq!(a.status, 200, "{uri}");
            assert_eq!(
                a.header("cache-control"),
                Some("public, max-age=31536000, immutable")
            );
            assert!(a.header("set-cookie").is_none());
            assert_eq!(a.body, answers[0].body);
        }
        assert_eq!(answers[19].header("x-cache-status"), Some("HIT"), "{uri}");
        edge.wait_logged(&uri, 20);
        assert!(
            edge.upstream_requests(&uri) <= 1,
            "{uri} went upstream {} times",
            edge.upstream_requests(&uri)
        );
    }

    // An hls.js-style player follows the parts through the edge.
    let followed = follow_parts(&edge, 6);
    let numbers: Vec<u64> = followed.iter().filter_map(|u| segment_number(u)).collect();
    assert!(numbers.windows(2).all(|w| w[1] >= w[0]), "{followed:?}");

    // 60 viewers ask for the same not-yet-existing part at once: one request reaches onair,
    // every viewer gets the playlist listing it, and the answer stays cached.
    let (epoch, msn, part_no) = hint(&srv.get("/hls/alice/source/index.m3u8").1);
    let query = format!("/hls/alice/source/index.m3u8?_HLS_msn={msn}&_HLS_part={part_no}");
    let want = format!("{epoch}-{msn}.{part_no}.m4s");
    let before = served(&srv, "media_playlist");
    let answers = burst(&edge.url(&query), 60);
    for a in &answers {
        assert_eq!(a.status, 200);
        // It lists the part, or the segment ended before it (the hint moved on).
        let (_, m, p) = hint(&a.text());
        assert!(
            part_uris(&a.text()).contains(&want) || m > msn,
            "{want} {m}.{p}: {}",
            a.text()
        );
        assert_eq!(a.header("cache-control"), Some("public, max-age=6"));
    }
    edge.wait_logged(&query, 60);
    assert_eq!(edge.upstream_requests(&query), 1, "{:?}", edge.log());
    assert_eq!(served(&srv, "media_playlist") - before, 1);
    assert_eq!(edge.get(&query).header("x-cache-status"), Some("HIT"));

    // 60 viewers ask for the preload-hinted part at once: one request reaches onair.
    let hinted = edge.get(&query).text();
    let (epoch, msn, part_no) = hint(&hinted);
    let uri = format!("/hls/alice/source/{epoch}-{msn}.{part_no}.m4s");
    let before = served(&srv, "segment");
    let answers = burst(&edge.url(&uri), 60);
    let ok = answers.iter().filter(|a| a.status == 200).count();
    // The hint may name a part that never comes (the segment ended first): then all 404.
    assert!(ok == 60 || ok == 0, "{ok} of 60");
    eprintln!("hinted part {uri}: {ok} of 60 answered 200");
    if ok == 60 {
        assert!(answers.iter().all(|a| &a.body[4..8] == b"moof"));
        edge.wait_logged(&uri, 60);
        assert_eq!(edge.upstream_requests(&uri), 1, "{:?}", edge.log());
        assert_eq!(served(&srv, "segment") - before, 1);
    }

    // Refusals come at once and are not kept: _HLS_msn far ahead, _HLS_part alone or too far
    // ahead, a part that does not exist yet.
    let (epoch, msn, _) = hint(&srv.get("/hls/alice/source/index.m3u8").1);
    for (path, status) in [
        (
            format!("/hls/alice/source/index.m3u8?_HLS_msn={}", msn + 50),
            400,
        ),
        ("/hls/alice/source/index.m3u8?_HLS_part=1".to_string(), 400),
        (
            format!("/hls/alice/source/index.m3u8?_HLS_msn={msn}&_HLS_part=99"),
            400,
        ),
        (format!("/hls/alice/source/{epoch}-{}.0.m4s", msn + 3), 404),
    ] {
        for _ in 0..2 {
            let t = Instant::now();
            let a = edge.get(&path);
            assert_eq!(a.status, status, "{path}: {}", a.text());
            assert!(t.elapsed() < SECS, "{path} took {:?}", t.elapsed());
            assert_eq!(a.header("cache-control"), Some("no-store"), "{path}");
            assert_ne!(a.header("x-cache-status"), Some("HIT"), "{path}");
        }
        edge.wait_logged(&path, 2);
        assert_eq!(edge.upstream_requests(&path), 2, "{path}");
    }

    // No plain playlist is held past its max-age: every playlist the edge serves was still
    // onair's current one at most max-age ago (plus nginx's one-second clock).
    let mut last_seen_at_origin: HashMap<String, Instant> = HashMap::new();
    let mut hits = 0;
    let mut worst = Duration::ZERO;
    let end = Instant::now() + 8 * SECS;
    while Instant::now() < end {
        let (_, o) = srv.get("/hls/alice/source/index.m3u8");
        last_seen_at_origin.insert(o, Instant::now());
        let a = edge.get("/hls/alice/source/index.m3u8");
        let t = Instant::now();
        hits += (a.header("x-cache-status") == Some("HIT")) as usize;
        let (_, o) = srv.get("/hls/alice/source/index.m3u8");
        last_seen_at_origin.insert(o, Instant::now());
        if let Some(seen) = last_seen_at_origin.get(&a.text()) {
            worst = worst.max(t.saturating_duration_since(*seen));
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    eprintln!("plain playlist: {hits} cache hits, the oldest served was {worst:?} behind onair");
    assert!(
        hits > 0,
        "the edge never answered a playlist from its cache"
    );
    assert!(
        worst <= Duration::from_millis(2500),
        "a playlist {worst:?} old was served (max-age=1)"
    );
    assert!(
        !edge.error_log().contains("[crit]") && !edge.error_log().contains("[emerg]"),
        "{}",
        edge.error_log()
    );
}

#[test]
fn a_new_broadcast_never_gets_the_old_broadcasts_cached_objects() {
    if !nginx_installed() {
        panic!("nginx is not installed: scripts/test installs scripts/packages-test.txt");
    }
    let _g = media_lock();
    // Default low-latency settings (0.2 s parts: plain playlists are no-cache), freed 1 s
    // after the end.
    let srv = TestServer::start("[hls]\ncontainer = \"fmp4\"\nlinger_seconds = 1\n");
    let edge = Edge::start(&srv.http);
    let first = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 7.0,
            gop: 30,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 2, 30 * SECS);
    // A viewer through the edge fills its cache with the first broadcast.
    let pl = edge.get("/hls/alice/source/index.m3u8");
    assert_eq!(pl.header("cache-control"), Some("no-cache"));
    let old = pl.text();
    let (old_epoch, msn, part) = hint(&old);
    let blocked = format!("/hls/alice/source/index.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    assert_eq!(edge.get(&blocked).status, 200);
    let old_objects: Vec<String> = segments(&old)
        .into_iter()
        .map(|(u, _)| u)
        .chain(part_uris(&old))
        .collect();
    for u in &old_objects {
        assert_eq!(edge.get(&format!("/hls/alice/source/{u}")).status, 200);
    }
    let old_last = segments(&old)
        .iter()
        .filter_map(|(u, _)| segment_number(u))
        .max()
        .expect("numbers");
    let (ok, err) = first.wait(30 * SECS);
    assert!(ok, "{err}");
    wait_for(20 * SECS, "the first broadcast to be freed", || {
        (srv.get("/hls/alice/source/index.m3u8").0 == 404).then_some(())
    });

    // The second broadcast on the same channel.
    let _second = push(
        &srv.rtmp_url(ALICE_KEY),
        PushOpts {
            seconds: 30.0,
            gop: 30,
            ..Default::default()
        },
    );
    srv.wait_segments("alice", "source", 2, 30 * SECS);
    let a = edge.get("/hls/alice/source/index.m3u8");
    assert_eq!(a.status, 200);
    assert_ne!(a.header("x-cache-status"), Some("HIT"));
    let new = a.text();
    let (new_epoch, new_msn, new_part) = hint(&new);
    assert_ne!(new_epoch, old_epoch);
    assert!(!new.contains(&old_epoch), "{new}");
    // It numbers on: no blocking reload of the new broadcast has the query of an old one.
    assert!(new_msn > old_last + 1, "{new_msn} vs {old_last}");
    let new_objects: Vec<String> = segments(&new)
        .into_iter()
        .map(|(u, _)| u)
        .chain(part_uris(&new))
        .collect();
    assert!(new_objects.iter().all(|u| !old_objects.contains(u)));
    // Old names are gone at onair (the edge may still hold them; nobody asks).
    for u in &old_objects {
        assert_eq!(srv.get(&format!("/hls/alice/source/{u}")).0, 404, "{u}");
    }
    let b = edge.get(&format!(
        "/hls/alice/source/index.m3u8?_HLS_msn={new_msn}&_HLS_part={new_part}"
    ));
    assert_eq!(b.status, 200);
    assert!(b.text().contains(&new_epoch) && !b.text().contains(&old_epoch));
    assert_test_pattern(&ffprobe_url(&edge.url("/hls/alice/master.m3u8")));
}
