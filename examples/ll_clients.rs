//! Load client for `scripts/bench-ll-clients` and `scripts/bench-edge`: N low-latency HLS
//! clients on one channel, each on its own keep-alive HTTP/1.1 connection, looping on blocking
//! playlist reloads for the next part (`_HLS_msn`/`_HLS_part` from the preload hint), as hls.js
//! does in low-latency mode. For every part it records when each client got the playlist that
//! lists it; the spread from the first answer to each later one is the fan-out delay (the first
//! answer leaves as the part completes). With `parts`, each client then also fetches the part
//! it waited for, and the same spread is reported for the part's bytes (part delivery).
//!
//! Usage: ll_clients HOST:PORT PATH CLIENTS SECONDS [parts]
//! A raw HTTP/1.1 client on purpose: the figure must include nothing but the server's work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Arrivals = Arc<Mutex<HashMap<(u64, u64), Vec<Instant>>>>;

/// The preload hint: (msn, part, URI); names are `{epoch}-{msn}.{part}.m4s`.
fn hint(p: &str) -> Option<(u64, u64, String)> {
    let line = p.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
    let (_, numbers) = uri.split_once('-')?;
    let (m, rest) = numbers.split_once('.')?;
    Some((
        m.parse().ok()?,
        rest.trim_end_matches(".m4s").parse().ok()?,
        uri.to_string(),
    ))
}

async fn get(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    w.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
    }
    let mut body = Vec::new();
    if chunked {
        // A proxy may re-chunk: size line, data, CRLF, until a zero-size chunk.
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(len, 0);
        r.read_exact(&mut body).await?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn client(
    host: String,
    path: String,
    until: Instant,
    arrivals: Arrivals,
    parts: Option<Arrivals>,
) -> u64 {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    let Ok(sock) = TcpStream::connect(&host).await else {
        return 1;
    };
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let mut errors = 0;
    let mut next = match get(&mut r, &mut w, &host, &path).await {
        Ok((200, p)) => hint(&p),
        _ => None,
    };
    while Instant::now() < until {
        let Some((msn, part, uri)) = next.take() else {
            errors += 1;
            break;
        };
        let q = format!("{path}?_HLS_msn={msn}&_HLS_part={part}");
        match get(&mut r, &mut w, &host, &q).await {
            Ok((200, p)) => {
                let at = Instant::now();
                if let Ok(mut a) = arrivals.lock() {
                    a.entry((msn, part)).or_default().push(at);
                }
                next = hint(&p);
                // The part it waited for, when the playlist lists it.
                if let Some(parts) = parts.as_ref().filter(|_| p.contains(&uri)) {
                    match get(&mut r, &mut w, &host, &format!("{dir}/{uri}")).await {
                        Ok((200, _)) => {
                            let at = Instant::now();
                            if let Ok(mut a) = parts.lock() {
                                a.entry((msn, part)).or_default().push(at);
                            }
                        }
                        _ => {
                            errors += 1;
                            break;
                        }
                    }
                }
            }
            _ => {
                errors += 1;
                break;
            }
        }
    }
    errors
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: ll_clients HOST:PORT PATH CLIENTS SECONDS [parts]");
        std::process::exit(2);
    }
    let (host, path) = (args[1].clone(), args[2].clone());
    let n: usize = args[3].parse().unwrap_or(1000);
    let secs: u64 = args[4].parse().unwrap_or(20);
    let until = Instant::now() + Duration::from_secs(secs);
    let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::new()));
    let parts: Option<Arrivals> =
        (args.get(5).map(String::as_str) == Some("parts")).then(Default::default);
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(client(
                host.clone(),
                path.clone(),
                until,
                arrivals.clone(),
                parts.clone(),
            ))
        })
        .collect();
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap_or(1);
    }
    let wall = started.elapsed().as_secs_f64();
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let (answered, line) = spread("fan-out delay", &arrivals);
    let mut total = answered;
    let mut out = format!(
        "clients {n}  parts {}  answers {answered}  errors {errors}  {line}",
        arrivals.len()
    );
    if let Some(parts) = parts {
        let parts = parts.lock().map(|a| a.clone()).unwrap_or_default();
        let (got, line) = spread("part delivery", &parts);
        total += got;
        out.push_str(&format!("\n  parts fetched {got}  {line}"));
    }
    out.push_str(&format!(
        "\n  {:.0} requests/s answered",
        total as f64 / wall
    ));
    println!("{out}");
}

/// Answers counted and the p50/p99/max spread from each item's first arrival to the others.
fn spread(what: &str, arrivals: &HashMap<(u64, u64), Vec<Instant>>) -> (usize, String) {
    let mut spreads = Vec::new();
    let mut answered = 0usize;
    for times in arrivals.values() {
        let Some(first) = times.iter().min() else {
            continue;
        };
        answered += times.len();
        spreads.extend(times.iter().map(|t| t.duration_since(*first)));
    }
    spreads.sort();
    let pct = |p: f64| {
        spreads
            .get(((spreads.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let line = format!(
        "{what} p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3
    );
    (answered, line)
}
