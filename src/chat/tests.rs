//! Unit tests of the chat: posting rules, history and resume, moderation, bans through the
//! database, viewer counts and the event ring.
use std::net::IpAddr;

use super::*;
use http_body_util::BodyExt;

async fn chat_with(cfg: ChatConfig) -> (Arc<Chat>, Arc<Bus>) {
    let db = Db::open_in_memory().await.unwrap();
    chat_on(cfg, db).await
}

async fn chat_on(cfg: ChatConfig, db: Db) -> (Arc<Chat>, Arc<Bus>) {
    let bus = Bus::new();
    bus.ensure(&ChannelName::new("alice"));
    let tracker = TaskTracker::new();
    let chat = Chat::start(cfg, bus.clone(), db, &tracker, CancellationToken::new())
        .await
        .unwrap();
    (chat, bus)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn frames(body: &mut SseBody, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("frame in time")
            .expect("stream open")
            .expect("infallible");
        if let Ok(d) = f.into_data() {
            out.push(String::from_utf8_lossy(&d).into_owned());
        }
    }
    out
}

/// The next data frame, or `None` when the stream ended.
async fn next_frame(body: &mut SseBody) -> Option<String> {
    loop {
        let f = tokio::time::timeout(Duration::from_secs(60), body.frame())
            .await
            .expect("frame or end in time")?
            .expect("infallible");
        if let Ok(d) = f.into_data() {
            return Some(String::from_utf8_lossy(&d).into_owned());
        }
    }
}

#[tokio::test]
async fn keepalives_come_through_the_ring_and_shutdown_ends_every_stream() {
    let bus = Bus::new();
    bus.ensure(&ChannelName::new("alice"));
    let cancel = CancellationToken::new();
    let chat = Chat::start(
        ChatConfig::default(),
        bus.clone(),
        Db::open_in_memory().await.unwrap(),
        &TaskTracker::new(),
        cancel.clone(),
    )
    .await
    .unwrap();
    let start = tokio::time::Instant::now();
    let mut body = chat.subscribe("alice", ip("10.0.0.1"), None).unwrap();
    let mut seen = Vec::new();
    loop {
        let f = next_frame(&mut body).await.expect("stream open");
        if f == ": keep-alive\n\n" {
            break;
        }
        seen.push(f);
    }
    let waited = start.elapsed();
    assert!(
        // On the real clock: one late tick of slack on a loaded machine.
        waited >= KEEPALIVE_INTERVAL && waited <= KEEPALIVE_INTERVAL + 2 * VIEWERS_INTERVAL,
        "keep-alive after {waited:?}"
    );
    assert!(seen[0].starts_with("retry:"), "{seen:?}");
    // Stopping ends the open stream, and one opened afterwards ends after its snapshot.
    cancel.cancel();
    while let Some(f) = next_frame(&mut body).await {
        assert!(
            f.starts_with(": keep-alive") || f.contains("event: viewers"),
            "{f}"
        );
    }
    let mut late = chat.subscribe("alice", ip("10.0.0.2"), None).unwrap();
    let mut n = 0;
    while next_frame(&mut late).await.is_some() {
        n += 1;
    }
    assert_eq!(n, 3, "retry, state and viewers, then the end");
}

#[tokio::test]
async fn post_reaches_subscribers_and_history_replays_after_last_event_id() {
    let (chat, _bus) = chat_with(ChatConfig::default()).await;
    let a = ip("10.0.0.1");
    let first = chat.post("alice", a, "ann", "one", None).unwrap();
    let second = chat.post("alice", a, "ann", "two", None).unwrap();
    assert_eq!(second.id, first.id + 1);

    let mut fresh = chat.subscribe("alice", a, None).unwrap();
    let f = frames(&mut fresh, 5).await;
    assert_eq!(f[0], "retry: 2000\n\n");
    assert!(f[1].contains("\"text\":\"one\""), "{f:?}");
    assert!(f[2].contains("\"text\":\"two\""), "{f:?}");
    assert!(f[3].starts_with(&format!("id: {}\nevent: offline\n", second.id)));
    assert!(f[4].contains("event: viewers"));

    let mut resumed = chat.subscribe("alice", a, Some(first.id)).unwrap();
    let f = frames(&mut resumed, 3).await;
    assert!(f[1].contains("\"text\":\"two\""), "{f:?}");
    assert!(f[2].contains("event: offline"), "{f:?}");

    // An id from nowhere (another server, garbage) gets the whole history.
    let mut stranger = chat.subscribe("alice", a, Some(u64::MAX)).unwrap();
    let f = frames(&mut stranger, 3).await;
    assert!(f[1].contains("\"text\":\"one\""), "{f:?}");

    let third = chat.post("alice", a, "bob", "three", None).unwrap();
    let got = frames(&mut resumed, 2).await;
    let got = got.iter().find(|f| f.contains("event: chat")).unwrap();
    assert!(got.starts_with(&format!("id: {}\n", third.id)), "{got}");
}

#[tokio::test]
async fn moderation() {
    let cfg = ChatConfig {
        burst: 2,
        rate_per_second: 1.0,
        blocked_words: vec!["darn".into()],
        max_message_chars: 10,
        ..Default::default()
    };
    let (chat, _bus) = chat_with(cfg).await;
    let a = ip("10.0.0.1");
    assert!(chat.post("alice", a, "ann", "hi", None).is_ok());
    assert!(chat.post("alice", a, "ann", "hi", None).is_ok());
    assert_eq!(
        chat.post("alice", a, "ann", "hi", None),
        Err(ChatError::RateLimited { retry_after: 1 })
    );
    // Another nick from the same address has its own bucket.
    assert_eq!(
        chat.post("alice", a, "bea", "darn", None).unwrap().text,
        "****"
    );
    assert!(matches!(
        chat.post("alice", a, "cy", "01234567890", None),
        Err(ChatError::TooLong { .. })
    ));
    assert!(matches!(
        chat.post("alice", a, "", "x", None),
        Err(ChatError::Invalid { .. })
    ));
    assert_eq!(
        chat.post("nobody", a, "x", "y", None),
        Err(ChatError::NoChannel)
    );

    let b = ip("10.0.0.2");
    let m = chat.post("alice", b, "Troll", "spam", None).unwrap();
    assert_eq!(
        chat.ban("alice", &BanTarget::Nick("troll".into())).await,
        Ok(1)
    );
    assert_eq!(
        chat.post("alice", b, "TROLL", "x", None),
        Err(ChatError::Banned)
    );
    assert_eq!(
        chat.delete("alice", m.id),
        Err(ChatError::NoSuchMessage { id: m.id })
    );
    assert_eq!(
        chat.unban("alice", &BanTarget::Nick("Troll".into())).await,
        Ok(true)
    );
    // An address ban ends that address's event streams (and only those) and refuses new
    // ones while it lasts.
    let mut troll_stream = chat.subscribe("alice", b, None).unwrap();
    let mut other_stream = chat.subscribe("alice", ip("10.0.0.9"), None).unwrap();
    chat.ban("alice", &BanTarget::Address(b)).await.unwrap();
    assert_eq!(
        chat.post("alice", b, "other", "x", None),
        Err(ChatError::Banned)
    );
    // Ends after its snapshot and whatever was already on its way (a timeout fails).
    while next_frame(&mut troll_stream).await.is_some() {}
    assert!(matches!(
        chat.subscribe("alice", b, None),
        Err(ChatError::Banned)
    ));
    let m = chat
        .post("alice", ip("10.0.0.9"), "fay", "still here", None)
        .unwrap();
    let want = format!("id: {}\nevent: chat", m.id);
    while !next_frame(&mut other_stream)
        .await
        .expect("still open")
        .contains(&want)
    {}
    drop(troll_stream);
    let alice = chat.stats().into_iter().find(|s| s.channel == "alice");
    assert_eq!(alice.map(|s| s.subscribers), Some(1));

    // A post from just before slow mode was turned on does not hold back the next one.
    let c = ip("10.0.0.3");
    assert!(chat.post("alice", c, "dee", "before", None).is_ok());
    chat.set_slow_mode("alice", 30).unwrap();
    assert!(chat.post("alice", c, "dee", "one", None).is_ok());
    assert!(matches!(
        chat.post("alice", c, "dee", "two", None),
        Err(ChatError::SlowMode {
            retry_after: 30 | 29
        })
    ));
}

#[tokio::test]
async fn bans_are_committed_before_the_answer_and_loaded_at_start() {
    let db = Db::open_in_memory().await.unwrap();
    let (chat, _bus) = chat_on(ChatConfig::default(), db.clone()).await;
    let stored = |db: Db| async move { db.call(|c| db::bans::all(c)).await.unwrap() };
    assert_eq!(
        chat.ban("alice", &BanTarget::Nick(" Troll ".into())).await,
        Ok(0)
    );
    chat.ban("alice", &BanTarget::Address(ip("203.0.113.7")))
        .await
        .unwrap();
    let saved = stored(db.clone()).await;
    assert!(saved["alice"].nicks.contains("troll"), "{saved:?}");
    assert_eq!(chat.bans("alice").unwrap(), saved["alice"]);
    assert_eq!(
        chat.ban("nobody", &BanTarget::Nick("x".into())).await,
        Err(ChatError::NoChannel)
    );

    // A new chat on the same database (a restart) starts with them.
    let (again, _bus) = chat_on(ChatConfig::default(), db.clone()).await;
    assert_eq!(
        again.post("alice", ip("10.0.0.1"), "TROLL", "x", None),
        Err(ChatError::Banned)
    );
    assert_eq!(again.bans("alice").unwrap(), saved["alice"]);
    let troll = BanTarget::Nick("troll".into());
    assert_eq!(again.unban("alice", &troll).await, Ok(true));
    assert_eq!(again.unban("alice", &troll).await, Ok(false));
    assert!(stored(db.clone()).await["alice"].nicks.is_empty());

    // A database that fails the write: refused, and nothing changes in memory either.
    db.call(|c| Ok(c.execute_batch("DROP TABLE chat_bans")?))
        .await
        .unwrap();
    assert_eq!(again.ban("alice", &troll).await, Err(ChatError::Unsaved));
    assert!(again
        .post("alice", ip("10.0.0.1"), "troll", "x", None)
        .is_ok());
}

#[tokio::test]
async fn subscriber_caps_and_counts() {
    let cfg = ChatConfig {
        max_subscribers: 3,
        max_subscribers_per_address: 2,
        ..Default::default()
    };
    let (chat, _bus) = chat_with(cfg).await;
    let a = ip("10.0.0.1");
    let s1 = chat.subscribe("alice", a, None).unwrap();
    let _s2 = chat.subscribe("alice", a, None).unwrap();
    assert!(matches!(
        chat.subscribe("alice", a, None),
        Err(ChatError::AddressFull)
    ));
    let _s3 = chat.subscribe("alice", ip("10.0.0.2"), None).unwrap();
    assert!(matches!(
        chat.subscribe("alice", ip("10.0.0.3"), None),
        Err(ChatError::ChannelFull)
    ));
    chat.touch_hls("alice", a);
    chat.touch_hls("alice", ip("10.0.0.9"));
    assert_eq!(chat.viewers("alice"), 4);
    drop(s1);
    assert_eq!(chat.viewers("alice"), 3);
    assert!(chat.subscribe("alice", a, None).is_ok());
}

#[tokio::test]
async fn slow_subscriber_is_disconnected_without_blocking_others() {
    let (chat, _bus) = chat_with(ChatConfig {
        rate_per_second: 1e6,
        burst: 1_000_000,
        ..Default::default()
    })
    .await;
    let a = ip("10.0.0.1");
    let mut slow = chat.subscribe("alice", a, None).unwrap();
    let mut fast = chat.subscribe("alice", a, None).unwrap();
    let _ = frames(&mut slow, 3).await;
    let _ = frames(&mut fast, 3).await;
    let total = EVENT_BUFFER + 10;
    let last = format!("\"m{}\"", total - 1);
    let reader = tokio::spawn(async move {
        loop {
            match fast.frame().await {
                Some(Ok(f)) => {
                    if f.into_data()
                        .is_ok_and(|d| String::from_utf8_lossy(&d).contains(&last))
                    {
                        return true;
                    }
                }
                _ => return false,
            }
        }
    });
    for i in 0..total {
        chat.post("alice", a, "ann", &format!("m{i}"), None)
            .unwrap();
        if i % 32 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(reader.await.unwrap(), "the fast subscriber got everything");
    // The slow one gets its buffer's worth at most, then its stream ends.
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), slow.frame()).await {
            Ok(None) => break,
            Ok(Some(_)) => got += 1,
            Err(_) => panic!("lagging subscriber must be disconnected"),
        }
    }
    assert!(got <= EVENT_BUFFER, "{got}");
    let st = chat.stats();
    let alice = st.iter().find(|c| c.channel == "alice").unwrap();
    assert_eq!((alice.lagged, alice.messages), (1, total as u64));
}

fn identity(name: &str) -> Identity {
    Identity {
        provider: crate::identity::Provider::Mastodon,
        id: format!("https://m.example/@{name}"),
        handle: format!("@{name}@m.example"),
        display_name: format!("{name} the Great"),
        avatar_url: None,
        profile_url: format!("https://m.example/@{name}"),
    }
}

#[tokio::test]
async fn signed_in_authors_their_names_and_identity_bans() {
    let (chat, _bus) = chat_with(ChatConfig::default()).await;
    let a = ip("10.0.0.1");
    let kim = identity("kim");
    let m = chat
        .post("alice", a, "whatever I typed", "hello", Some(&kim))
        .unwrap();
    assert_eq!(m.nick, "@kim@m.example", "the handle, not the typed nick");
    assert_eq!(m.author.as_ref(), Some(&kim));
    let mut s = chat.subscribe("alice", ip("10.0.0.5"), None).unwrap();
    let all = frames(&mut s, 3).await.join("");
    assert!(
        all.contains("\"author\":{") && all.contains("\"handle\":\"@kim@m.example\""),
        "{all}"
    );
    // Her names are hers in this channel: anonymous nicks cannot take them.
    for nick in ["kim", "Kim", "kim the Great"] {
        let r = chat.post("alice", ip("10.0.0.2"), nick, "it's me", None);
        assert!(
            matches!(&r, Err(ChatError::Invalid { reason }) if reason.contains("signed-in")),
            "{nick}: {r:?}"
        );
    }
    assert!(chat
        .post("alice", ip("10.0.0.2"), "kimberly", "hi", None)
        .is_ok());
    // An identity ban deletes her messages and holds whatever she types as a nick.
    let key = kim.key();
    assert_eq!(
        chat.ban("alice", &BanTarget::Identity(key.clone())).await,
        Ok(1)
    );
    assert_eq!(
        chat.post("alice", ip("10.9.9.9"), "new nick", "back", Some(&kim)),
        Err(ChatError::Banned)
    );
    assert!(chat.bans("alice").unwrap().identities.contains(&key));
    assert!(chat
        .post("alice", a, "x", "others are fine", Some(&identity("lee")))
        .is_ok());
    assert_eq!(
        chat.unban("alice", &BanTarget::Identity(key)).await,
        Ok(true)
    );
    assert!(chat.post("alice", a, "x", "back", Some(&kim)).is_ok());
}

#[tokio::test]
async fn the_studio_is_not_a_viewer() {
    let (chat, _bus) = chat_with(ChatConfig {
        max_subscribers_per_address: 2,
        ..Default::default()
    })
    .await;
    let (home, away) = (ip("10.0.0.1"), ip("10.0.0.2"));
    let studio = chat
        .subscribe_as("alice", home, None, Audience::Studio)
        .unwrap();
    assert_eq!(chat.viewers("alice"), 0);
    // A player at the broadcaster's address (their own check) still counts.
    chat.touch_hls("alice", home);
    assert_eq!(chat.viewers("alice"), 1);
    let viewer = chat.subscribe("alice", home, None).unwrap();
    assert_eq!(chat.viewers("alice"), 1);
    let _other = chat.subscribe("alice", away, None).unwrap();
    assert_eq!(chat.viewers("alice"), 2);
    // Held to the per-address limit like any stream.
    assert!(matches!(
        chat.subscribe_as("alice", home, None, Audience::Studio),
        Err(ChatError::AddressFull)
    ));
    drop(viewer);
    drop(studio);
    assert_eq!(chat.viewers("alice"), 2);
    assert!(chat
        .subscribe_as("alice", home, None, Audience::Studio)
        .is_ok());
    chat.set_slow_mode("alice", 10).unwrap();
    assert_eq!(chat.slow_mode("alice"), Ok(10));
}
