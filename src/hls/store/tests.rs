//! Unit tests of the [`super::HlsStore`] through its public API: sequence numbers aligned across
//! renditions, names never reused within an epoch, and what a new broadcast on a freed channel
//! gets.

use bytes::Bytes;
use chrono::Utc;

use super::*;
use crate::hls::names::MediaName;
use crate::hls::segmenter::{Part, Segment};
use crate::proto::media::StreamInfo;
use crate::proto::media::TIMESCALE;

fn seg(start_s: i64, discontinuity: bool) -> Segment {
    Segment {
        start: start_s * TIMESCALE,
        duration: 2 * TIMESCALE,
        data: Bytes::from_static(b"x"),
        discontinuity,
        video_frames: 0,
        info: StreamInfo::default(),
        init_id: 0,
    }
}

#[test]
fn transcoded_renditions_take_the_source_sequence_numbers() {
    let store = HlsStore::new(StoreConfig {
        window: 6,
        segment_seconds: 2.0,
        container: Container::Ts,
        part_seconds: 0.333,
    });
    let now = Utc::now();
    for t in [0, 2, 4] {
        store.push_segment("c", "source", 0, &seg(t, false), now);
    }
    // A rendition that joins late starts at the source's number for the same start.
    assert_eq!(store.push_segment("c", "360p", 1, &seg(4, false), now), 2);
    for t in [6, 8, 10] {
        store.push_segment("c", "source", 0, &seg(t, false), now);
    }
    assert_eq!(store.push_segment("c", "360p", 1, &seg(6, false), now), 3);
    // It lost the segment at 8 s (shed, or a restart): it jumps to 5, dropping what it
    // listed (the window must stay contiguous) and counting the discontinuity as passed.
    assert_eq!(store.push_segment("c", "360p", 1, &seg(10, true), now), 5);
    let p = String::from_utf8(
        store
            .media_playlist("c", "360p")
            .expect("playlist")
            .to_vec(),
    )
    .expect("utf8");
    assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:5"), "{p}");
    assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{p}");
    assert!(!p.contains("-3.ts"), "{p}");
    let five = segments_of(&p)
        .into_iter()
        .find(|u| u.ends_with("-5.ts"))
        .expect("5");
    assert_eq!(
        store.segment("c", "360p", &five).ok(),
        Some(Bytes::from_static(b"x"))
    );
    // Without a matching source segment the numbering just continues.
    assert_eq!(store.push_segment("c", "360p", 1, &seg(13, false), now), 6);
    // The source itself is never renumbered.
    assert_eq!(
        store.push_segment("c", "source", 0, &seg(12, false), now),
        6
    );
}

fn store(container: Container) -> HlsStore {
    HlsStore::new(StoreConfig {
        window: 6,
        segment_seconds: 2.0,
        container,
        part_seconds: 0.5,
    })
}

fn text(b: Bytes) -> String {
    String::from_utf8(b.to_vec()).expect("utf8")
}

fn part() -> Part {
    Part {
        duration: TIMESCALE / 2,
        data: Bytes::from_static(b"p"),
        independent: true,
    }
}

/// Every name a rendition ever lists carries its epoch and names one content: a new writer
/// whose init ids start over gets new init names, parts and segments never repeat.
#[test]
fn names_are_never_reused_within_an_epoch() {
    let store = store(Container::Fmp4);
    let now = Utc::now();
    let mut names = std::collections::HashSet::new();
    let mut listed = |p: String| {
        for l in p.lines() {
            if let Some(u) = l.split("URI=\"").nth(1).and_then(|u| u.split('"').next()) {
                names.insert(u.to_string());
            } else if !l.starts_with('#') && !l.is_empty() {
                names.insert(l.to_string());
            }
        }
    };
    for writer in 0..2 {
        // Each writer calls its first init 1, as a new segmenter does.
        store.set_init("c", "source", 0, 1, Bytes::from(vec![writer; 4]));
        for t in 0..3 {
            store.push_part("c", "source", 0, &part());
            let mut s = seg(writer as i64 * 10 + t * 2, t == 0);
            s.init_id = 1;
            store.push_segment("c", "source", 0, &s, now);
            listed(text(store.media_playlist("c", "source").expect("playlist")));
        }
    }
    let inits: Vec<&String> = names.iter().filter(|n| n.contains("-init-")).collect();
    assert_eq!(inits.len(), 2, "{names:?}");
    let a = store.segment("c", "source", inits[0]).expect("init");
    let b = store.segment("c", "source", inits[1]).expect("init");
    assert_ne!(a, b, "two init names, two contents");
    for n in &names {
        let m = MediaName::parse(n).unwrap_or_else(|| panic!("{n} parses"));
        assert_eq!(
            m.epoch,
            names
                .iter()
                .next()
                .and_then(|x| MediaName::parse(x))
                .map(|x| x.epoch)
                .expect("epoch")
        );
    }
    // 6 segments + 6 parts + 2 inits + the preload hints (one new name each time).
    assert!(names.len() >= 14, "{names:?}");
}

/// A freed channel's next broadcast gets a new epoch (old names are not found) and numbers
/// on from where the old one stopped (old blocking-reload answers keyed by `_HLS_msn`
/// cannot answer it).
#[test]
fn a_new_broadcast_gets_new_names_and_numbers_on() {
    let store = store(Container::Ts);
    let now = Utc::now();
    for t in [0, 2, 4] {
        store.push_segment("c", "source", 0, &seg(t, false), now);
    }
    let old = text(store.media_playlist("c", "source").expect("playlist"));
    let old_names: Vec<String> = segments_of(&old);
    assert_eq!(old_names.len(), 3);
    store.remove("c");
    assert_eq!(store.push_segment("c", "source", 0, &seg(0, false), now), 3);
    let new = text(store.media_playlist("c", "source").expect("playlist"));
    assert!(new.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{new}");
    for n in &old_names {
        assert_eq!(
            store.segment("c", "source", n),
            Err(Lookup::NoSegment),
            "{n}"
        );
        assert!(!new.contains(n.as_str()), "{new}");
    }
    let fresh = segments_of(&new);
    assert!(store.segment("c", "source", &fresh[0]).is_ok());
    // A rendition removed and created again also starts a new epoch.
    store.push_segment("c", "360p", 1, &seg(0, false), now);
    let before = segments_of(&text(store.media_playlist("c", "360p").expect("360p")));
    store.remove_rendition("c", "360p");
    store.push_segment("c", "360p", 1, &seg(2, false), now);
    let after = segments_of(&text(store.media_playlist("c", "360p").expect("360p")));
    assert_ne!(before[0].split('-').next(), after[0].split('-').next());
}

fn segments_of(p: &str) -> Vec<String> {
    p.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(String::from)
        .collect()
}
