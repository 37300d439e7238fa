//! Admission control: keeps the pool in real time by shedding renditions instead of letting
//! every stream fall behind.
//!
//! Every second the transcoder measures each active rendition's lag (how long its oldest
//! waiting frame has waited since it arrived from the bus) and the pool's utilisation, and asks
//! [`Admission::decide`] what to do. Pure (time is passed in) so that the policy is tested
//! with scripted loads:
//! - a rendition beyond `max_lag` whose lag is still growing, or far beyond it, means the pool
//!   is over capacity: shed the most expensive rendition of the newest stream, one per tick,
//!   so older viewers keep what they had;
//! - when nothing lags, the pool has room for the cheapest estimate of a shed rendition's cost
//!   and the load has been calm for a while, restore the last one shed. Restoring something
//!   that is shed again soon doubles the wait, so the pool does not oscillate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Who a rendition is: (stream id, rendition name).
pub type RenditionKey = (u64, String);

/// One rendition as admission control sees it.
#[derive(Debug, Clone)]
pub struct RenditionLoad {
    pub stream: u64,
    /// When the stream started; the newest is shed first.
    pub stream_started: Instant,
    pub name: String,
    /// Relative cost (pixels per second) to pick the most expensive.
    pub cost: f64,
    pub active: bool,
    pub lag: Duration,
    /// Measured CPU (cores) while it ran, if known.
    pub cores: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Nothing,
    Shed(RenditionKey),
    Restore(RenditionKey),
}

/// Wait after any change before restoring, at first.
const RESTORE_BASE: Duration = Duration::from_secs(10);
const RESTORE_MAX: Duration = Duration::from_secs(120);
/// A rendition shed again within this time of its restore was restored too early.
const FLAP_WINDOW: Duration = Duration::from_secs(30);
/// Fraction of the pool that restores may fill.
const RESTORE_HEADROOM: f64 = 0.8;
/// Cost assumed for a rendition never measured (cores).
const UNKNOWN_CORES: f64 = 0.5;

#[derive(Debug)]
pub struct Admission {
    max_lag: Duration,
    pool_size: usize,
    last_lags: HashMap<RenditionKey, Duration>,
    last_change: Option<Instant>,
    /// Shed renditions, last shed last, with their measured cost.
    shed: Vec<(RenditionKey, Option<f64>)>,
    restored_at: HashMap<RenditionKey, Instant>,
    restore_wait: Duration,
}

impl Admission {
    pub fn new(max_lag: Duration, pool_size: usize) -> Self {
        Self {
            max_lag,
            pool_size: pool_size.max(1),
            last_lags: HashMap::new(),
            last_change: None,
            shed: Vec::new(),
            restored_at: HashMap::new(),
            restore_wait: RESTORE_BASE,
        }
    }

    /// One tick: `utilisation` is the pool's busy fraction (0..=1) since the last tick.
    pub fn decide(&mut self, now: Instant, loads: &[RenditionLoad], utilisation: f64) -> Decision {
        // Forget streams that ended.
        self.shed
            .retain(|(k, _)| loads.iter().any(|l| l.stream == k.0 && l.name == k.1));
        let lags: HashMap<RenditionKey, Duration> = loads
            .iter()
            .filter(|l| l.active)
            .map(|l| ((l.stream, l.name.clone()), l.lag))
            .collect();
        let previous = std::mem::replace(&mut self.last_lags, lags);
        let falling_behind = loads.iter().filter(|l| l.active).any(|l| {
            let key = (l.stream, l.name.clone());
            let growing = previous.get(&key).is_none_or(|p| l.lag > *p);
            l.lag > self.max_lag && (growing || l.lag > self.max_lag * 3)
        });
        if falling_behind {
            let newest = loads
                .iter()
                .filter(|l| l.active)
                .max_by(|a, b| {
                    a.stream_started
                        .cmp(&b.stream_started)
                        .then(a.cost.total_cmp(&b.cost))
                })
                .cloned();
            let Some(victim) = newest else {
                return Decision::Nothing;
            };
            let key = (victim.stream, victim.name.clone());
            if self
                .restored_at
                .remove(&key)
                .is_some_and(|t| now.duration_since(t) < FLAP_WINDOW)
            {
                self.restore_wait = (self.restore_wait * 2).min(RESTORE_MAX);
            }
            self.shed.push((key.clone(), victim.cores));
            self.last_lags.remove(&key);
            self.last_change = Some(now);
            return Decision::Shed(key);
        }
        let calm = loads
            .iter()
            .filter(|l| l.active)
            .all(|l| l.lag <= self.max_lag / 4);
        let waited = self
            .last_change
            .is_none_or(|t| now.duration_since(t) >= self.restore_wait);
        if !calm || !waited {
            return Decision::Nothing;
        }
        let Some((key, cores)) = self.shed.last().cloned() else {
            self.restore_wait = RESTORE_BASE;
            return Decision::Nothing;
        };
        let need = cores.unwrap_or(UNKNOWN_CORES);
        if utilisation * self.pool_size as f64 + need > RESTORE_HEADROOM * self.pool_size as f64 {
            return Decision::Nothing;
        }
        self.shed.pop();
        self.restored_at.insert(key.clone(), now);
        self.last_change = Some(now);
        Decision::Restore(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(stream: u64, started: Instant, name: &str, cost: f64, lag_ms: u64) -> RenditionLoad {
        RenditionLoad {
            stream,
            stream_started: started,
            name: name.into(),
            cost,
            active: true,
            lag: Duration::from_millis(lag_ms),
            cores: Some(0.3),
        }
    }

    #[test]
    fn sheds_newest_streams_most_expensive_first_and_only_while_growing() {
        let t0 = Instant::now();
        let mut a = Admission::new(Duration::from_secs(3), 1);
        let old = t0;
        let new = t0 + Duration::from_secs(5);
        let mut loads = vec![
            load(1, old, "480p", 2.0, 100),
            load(1, old, "360p", 1.0, 100),
            load(2, new, "480p", 2.0, 100),
            load(2, new, "360p", 1.0, 100),
        ];
        assert_eq!(a.decide(t0, &loads, 0.5), Decision::Nothing);
        for l in &mut loads {
            l.lag = Duration::from_millis(3500);
        }
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            a.decide(t1, &loads, 1.0),
            Decision::Shed((2, "480p".into()))
        );
        loads[2].active = false;
        // Still behind and still growing: the next most expensive of the newest stream.
        for l in &mut loads {
            l.lag += Duration::from_millis(500);
        }
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            a.decide(t2, &loads, 1.0),
            Decision::Shed((2, "360p".into()))
        );
        loads[3].active = false;
        // Behind but draining: leave it alone.
        for l in &mut loads {
            l.lag -= Duration::from_millis(300);
        }
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!(a.decide(t3, &loads, 0.9), Decision::Nothing);
        // Far behind even if draining: shed.
        loads[0].lag = Duration::from_secs(10);
        loads[1].lag = Duration::from_secs(9);
        let t4 = t3 + Duration::from_secs(1);
        assert_eq!(
            a.decide(t4, &loads, 1.0),
            Decision::Shed((1, "480p".into()))
        );
    }

    #[test]
    fn restores_last_shed_when_calm_with_room_and_backs_off_on_flapping() {
        let t0 = Instant::now();
        let mut a = Admission::new(Duration::from_secs(2), 2);
        let mut loads = vec![
            load(1, t0, "480p", 2.0, 2500),
            load(1, t0, "360p", 1.0, 2500),
        ];
        assert_eq!(
            a.decide(t0, &loads, 1.0),
            Decision::Shed((1, "480p".into()))
        );
        loads[0].active = false;
        loads[1].lag = Duration::from_millis(100);
        // Calm, but not for long enough.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(a.decide(t1, &loads, 0.2), Decision::Nothing);
        // Long enough but no room: 0.8 * 2 cores - 1.5 busy < 0.3 needed.
        let t2 = t0 + Duration::from_secs(11);
        assert_eq!(a.decide(t2, &loads, 0.75), Decision::Nothing);
        assert_eq!(
            a.decide(t2, &loads, 0.3),
            Decision::Restore((1, "480p".into()))
        );
        loads[0].active = true;
        // Shed again soon after: the wait doubles to 20 s.
        loads[0].lag = Duration::from_millis(2500);
        loads[1].lag = Duration::from_millis(2500);
        let t3 = t2 + Duration::from_secs(3);
        assert_eq!(
            a.decide(t3, &loads, 1.0),
            Decision::Shed((1, "480p".into()))
        );
        loads[0].active = false;
        loads[1].lag = Duration::ZERO;
        assert_eq!(
            a.decide(t3 + Duration::from_secs(15), &loads, 0.1),
            Decision::Nothing
        );
        assert_eq!(
            a.decide(t3 + Duration::from_secs(21), &loads, 0.1),
            Decision::Restore((1, "480p".into()))
        );
    }
}
