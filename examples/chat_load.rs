//! Chat load client for `scripts/bench-chat`: opens many event-stream subscribers on one
//! channel of a running onair, posts messages, and measures for every subscriber the time from
//! the POST to the message's arrival, plus the server's resident memory per subscriber.
//!
//!   chat_load ADDR CHANNEL SUBSCRIBERS MESSAGES INTERVAL_MS SERVER_PID
//!
//! With `DEBATE_VOTERS=N` (the debate run), N viewers (told apart by `X-Forwarded-For`; the
//! server must trust 127.0.0.1) each ask a question before the message phase and then vote
//! and take votes back on random questions every `DEBATE_VOTE_MS` (default 500) during it.
//!
//! With `POST_ADDR=HOST:PORT` the messages are posted there instead of ADDR: another node of a
//! cluster (`scripts/bench-cluster-chat`), so that each delivery crosses Redis.
//!
//! Loopback only: ADDR (and POST_ADDR) must be a 127.0.0.0/8 or ::1 address. Bounded: every phase has a
//! deadline. Hand-written HTTP/1.1 (a GET per stream, scanning the raw bytes for markers)
//! because an HTTP client per subscriber would cost more memory than what is being measured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MARKER: &[u8] = b"\"text\":\"bench-";
const NOT_SEEN: u64 = u64::MAX;

struct Shared {
    start: Instant,
    messages: usize,
    /// Arrival time (ns since `start`) per subscriber and message.
    arrivals: Vec<AtomicU64>,
    ready: AtomicUsize,
    failed: AtomicUsize,
    closed: AtomicUsize,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of a process in seconds, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn subscriber(addr: SocketAddr, channel: String, idx: usize, shared: Arc<Shared>) {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(_) => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let req = format!("GET /api/channels/{channel}/events HTTP/1.1\r\nHost: bench\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut buf = vec![0u8; 4096];
    let mut carry: Vec<u8> = Vec::new();
    let mut ready = false;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = shared.start.elapsed().as_nanos() as u64;
        carry.extend_from_slice(&buf[..n]);
        if !ready {
            if !carry.starts_with(b"HTTP/1.1 200") {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // The snapshot ends with the viewers event: the stream is set up.
            if carry.windows(14).any(|w| w == b"event: viewers") {
                ready = true;
                shared.ready.fetch_add(1, Ordering::Relaxed);
                carry.clear();
            }
            continue;
        }
        let mut i = 0;
        while let Some(pos) = find(&carry[i..], MARKER) {
            let start = i + pos + MARKER.len();
            let digits = carry[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if start + digits >= carry.len() {
                // The number may go on in the next read.
                break;
            }
            if let Some(k) = std::str::from_utf8(&carry[start..start + digits])
                .ok()
                .and_then(|d| d.parse::<usize>().ok())
            {
                if k < shared.messages {
                    let slot = &shared.arrivals[idx * shared.messages + k];
                    let _ =
                        slot.compare_exchange(NOT_SEEN, now, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
            i = start + digits;
        }
        // Keep a tail that may hold the start of a marker split across reads.
        let keep = carry.len().saturating_sub(i).min(MARKER.len() + 24);
        carry.drain(..carry.len() - keep);
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn post(addr: SocketAddr, channel: &str, k: usize) -> Result<(), String> {
    let body = format!("{{\"nick\":\"bench\",\"text\":\"bench-{k}\"}}");
    let req = format!(
        "POST /api/channels/{channel}/chat HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp)).await;
    if resp.starts_with(b"HTTP/1.1 202") {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&resp[..resp.len().min(200)]).into_owned())
    }
}

/// One request with `Connection: close` and `headers` (each ending in CRLF); the status code.
async fn request(addr: SocketAddr, head: &str, headers: &str, body: &str) -> Result<u16, String> {
    let req = format!(
        "{head} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp)).await;
    let code = resp
        .get(9..12)
        .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok());
    code.ok_or_else(|| "no answer".to_string())
}

/// The debate run's viewers: each asks once, then votes (or takes back) on a random question
/// every `every` until `stop`. Returns (questions asked, votes sent, refused requests).
async fn debate(
    addr: SocketAddr,
    channel: String,
    voters: usize,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize, usize) {
    let ids = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let mut tasks = Vec::new();
    for v in 0..voters {
        let (channel, ids, stop) = (channel.clone(), ids.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let ip = format!("10.{}.{}.{}", v / 62500, (v / 250) % 250, v % 250 + 1);
            let xff = format!("X-Forwarded-For: {ip}\r\n");
            let (mut asked, mut votes, mut refused) = (0, 0, 0);
            let body = format!("{{\"nick\":\"v{v}\",\"text\":\"Question {v}?\"}}");
            let head = format!("POST /api/channels/{channel}/questions");
            // The ids come from the listing (below), which every voter then picks from.
            match request(addr, &head, &xff, &body).await {
                Ok(202) => asked += 1,
                _ => refused += 1,
            }
            let mut seed = v as u64 * 2654435761 + 1;
            let mut mine = std::collections::HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                let pick = {
                    let ids = ids.lock().unwrap_or_else(|e| e.into_inner());
                    if ids.is_empty() {
                        continue;
                    }
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ids[(seed % ids.len() as u64) as usize]
                };
                let method = if mine.remove(&pick) {
                    "DELETE"
                } else {
                    mine.insert(pick);
                    "POST"
                };
                let head = format!("{method} /api/channels/{channel}/questions/{pick}/vote");
                match request(addr, &head, &xff, "").await {
                    Ok(200) => votes += 1,
                    _ => refused += 1,
                }
            }
            (asked, votes, refused)
        }));
    }
    // The question ids, from the listing once the questions are in.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(mut s) = TcpStream::connect(addr).await else {
            continue;
        };
        let req = format!("GET /api/channels/{channel}/questions HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            continue;
        }
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp)).await;
        let text = String::from_utf8_lossy(&resp);
        let Some(json) = text.split("\r\n\r\n").nth(1) else {
            continue;
        };
        let found: Vec<u64> = json
            .split("\"id\":")
            .skip(1)
            .filter_map(|p| p.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect();
        let n = found.len();
        *ids.lock().unwrap_or_else(|e| e.into_inner()) = found;
        if n >= voters {
            break;
        }
    }
    let mut total = (0, 0, 0);
    for t in tasks {
        if let Ok((a, v, r)) = t.await {
            total = (total.0 + a, total.1 + v, total.2 + r);
        }
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: chat_load ADDR CHANNEL SUBSCRIBERS MESSAGES INTERVAL_MS SERVER_PID");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR");
    assert!(addr.ip().is_loopback(), "loopback addresses only");
    let channel = args[2].clone();
    let n: usize = args[3].parse().expect("SUBSCRIBERS");
    let m: usize = args[4].parse().expect("MESSAGES");
    let interval = Duration::from_millis(args[5].parse().expect("INTERVAL_MS"));
    let pid: u32 = args[6].parse().expect("SERVER_PID");
    let post_addr: SocketAddr = match std::env::var("POST_ADDR") {
        Ok(a) => a.parse().expect("POST_ADDR"),
        Err(_) => addr,
    };
    assert!(post_addr.ip().is_loopback(), "loopback addresses only");
    let threads: usize = std::env::var("CHAT_LOAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(addr, post_addr, channel, n, m, interval, pid));
}

async fn run(
    addr: SocketAddr,
    post_addr: SocketAddr,
    channel: String,
    n: usize,
    m: usize,
    interval: Duration,
    pid: u32,
) {
    let shared = Arc::new(Shared {
        start: Instant::now(),
        messages: m,
        arrivals: (0..n * m).map(|_| AtomicU64::new(NOT_SEEN)).collect(),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
    });
    let rss_before = rss_kib(pid);
    let connect_start = Instant::now();
    // Connect in waves of 250 so the listen backlog never overflows.
    let wave = 250;
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next < n && Instant::now() < deadline {
        let end = (next + wave).min(n);
        for idx in next..end {
            tokio::spawn(subscriber(addr, channel.clone(), idx, shared.clone()));
        }
        next = end;
        while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < next
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = shared.ready.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    println!(
        "subscribers: {ready} ready, {failed} failed, in {:.1} s",
        connect_start.elapsed().as_secs_f64()
    );
    // Let the server settle (viewer counting tick, allocator) before reading memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib(pid);
    let per_sub = if ready > 0 {
        (rss_after.saturating_sub(rss_before)) as f64 / ready as f64
    } else {
        0.0
    };
    println!(
        "server RSS: {rss_before} KiB before, {rss_after} KiB with {ready} subscribers: {per_sub:.2} KiB per subscriber"
    );

    let voters: usize = std::env::var("DEBATE_VOTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let every = Duration::from_millis(
        std::env::var("DEBATE_VOTE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let debate_run = (voters > 0).then(|| {
        println!("debate: {voters} viewers ask and vote every {every:?}");
        tokio::spawn(debate(addr, channel.clone(), voters, every, stop.clone()))
    });
    if debate_run.is_some() {
        // Let the questions in and the voting start before measuring chat.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let cpu_server = cpu_seconds(&pid.to_string());
    let cpu_client = cpu_seconds("self");
    let mut sent = vec![0u64; m];
    let mut post_errors = 0;
    for (k, slot) in sent.iter_mut().enumerate() {
        *slot = shared.start.elapsed().as_nanos() as u64;
        if let Err(e) = post(post_addr, &channel, k).await {
            post_errors += 1;
            eprintln!("post {k} failed: {e}");
        }
        tokio::time::sleep(interval).await;
    }
    // Grace for the last deliveries.
    let grace = Instant::now() + Duration::from_secs(10);
    loop {
        let missing = shared
            .arrivals
            .iter()
            .take(ready * m)
            .filter(|a| a.load(Ordering::Relaxed) == NOT_SEEN)
            .count();
        if missing == 0 || Instant::now() > grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(d) = debate_run {
        if let Ok((asked, votes, refused)) = d.await {
            println!("debate: {asked} questions asked, {votes} votes, {refused} refused");
        }
    }
    let rss_end = rss_kib(pid);
    println!(
        "CPU during the message phase: server {:.2} s, load client {:.2} s",
        cpu_seconds(&pid.to_string()) - cpu_server,
        cpu_seconds("self") - cpu_client
    );
    let mut lat: Vec<u64> = Vec::with_capacity(n * m);
    let mut missing = 0usize;
    for sub in 0..n {
        for (k, t0) in sent.iter().enumerate() {
            let a = shared.arrivals[sub * m + k].load(Ordering::Relaxed);
            if a == NOT_SEEN {
                missing += 1;
            } else {
                lat.push(a.saturating_sub(*t0));
            }
        }
    }
    lat.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "deliveries: {} of {} ({} missing, {} subscribers failed to connect, {} post errors, {} streams closed early)",
        lat.len(),
        n * m,
        missing,
        failed,
        post_errors,
        shared.closed.load(Ordering::Relaxed)
    );
    println!(
        "latency POST -> delivery: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or(0))
    );
    println!("server RSS at end: {rss_end} KiB");
    println!(
        "RESULT subscribers={ready} messages={m} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} kib_per_subscriber={per_sub:.2} missing={missing}",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or(0))
    );
    std::process::exit(0);
}
