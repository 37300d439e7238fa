//! Every input a fuzzer ever crashed on (fuzz/regressions/<target>/), the seed corpus
//! (fuzz/seeds/), and a short, deterministic random-mutation run of each fuzz harness, all under
//! plain `cargo test` (libFuzzer itself runs from scripts/fuzz).

use std::path::PathBuf;
use std::time::{Duration, Instant};

type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 6] = [
    ("rtmp_ingest", onair::fuzzing::rtmp_ingest),
    ("rtmp_messages", onair::fuzzing::rtmp_messages),
    ("flv_media", onair::fuzzing::flv_media),
    ("http_route", onair::fuzzing::http_route),
    ("ertmp_tags", onair::fuzzing::ertmp_tags),
    ("ts_demux", onair::fuzzing::ts_demux),
];

fn inputs(dir: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&d)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn crashing_inputs_and_seeds_replay_cleanly() {
    let mut n = 0;
    for (target, run) in TARGETS {
        for dir in ["regressions", "seeds"] {
            for (path, data) in inputs(dir, target) {
                eprintln!("{target}: {}", path.display());
                run(&data);
                n += 1;
            }
        }
    }
    assert!(n >= 10, "only {n} inputs found");
}

/// xorshift, so a failure reproduces from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutates seeds (flip, overwrite, insert, delete, splice, truncate) for a bounded time per
/// target: a stand-in for libFuzzer where it cannot run, and a smoke test where it can.
#[test]
fn random_mutations_of_the_seeds_do_not_panic() {
    let budget = Duration::from_millis(
        std::env::var("ONAIR_FUZZ_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    for (i, (target, run)) in TARGETS.into_iter().enumerate() {
        let seeds: Vec<Vec<u8>> = inputs("seeds", target)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        assert!(!seeds.is_empty(), "no seeds for {target}");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ i as u64);
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < budget {
            let mut d = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(8) {
                let len = d.len();
                match rng.below(6) {
                    0 if len > 0 => {
                        let p = rng.below(len);
                        d[p] ^= 1 << rng.below(8);
                    }
                    1 if len > 0 => {
                        let p = rng.below(len);
                        d[p] = [0, 0xff, 0x7f, 0x80, 3, 9][rng.below(6)];
                    }
                    2 => {
                        let p = rng.below(len + 1);
                        let b = rng.next() as u8;
                        d.insert(p, b);
                    }
                    3 if len > 0 => {
                        let p = rng.below(len);
                        let n = rng.below(16).min(len - p);
                        d.drain(p..p + n);
                    }
                    4 => {
                        let other = &seeds[rng.below(seeds.len())];
                        if !other.is_empty() {
                            let a = rng.below(other.len());
                            let b = (a + rng.below(256)).min(other.len());
                            let p = rng.below(len + 1);
                            d.splice(p..p, other[a..b].iter().copied());
                        }
                    }
                    _ => {
                        let keep = rng.below(len + 1);
                        d.truncate(keep);
                    }
                }
            }
            let state = rng.0;
            let result = std::panic::catch_unwind(|| run(&d));
            assert!(
                result.is_ok(),
                "{target} panicked on a mutation (rng state {state:#x}, {} bytes): {:02x?}",
                d.len(),
                &d[..d.len().min(256)]
            );
            runs += 1;
        }
        eprintln!("{target}: {runs} random inputs in {budget:?}");
    }
}
