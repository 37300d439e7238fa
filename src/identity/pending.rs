//! Sign-ins under way: what the callback needs (PKCE verifier, provider endpoints, where to
//! go back), kept in memory under the OAuth `state` for [`PENDING_TTL`] and handed out once.
//! Nothing of it goes to the browser but the `state` itself. Bounded: when [`MAX_PENDING`]
//! sign-ins are under way, expired ones are dropped, and if none is, new sign-ins are refused
//! until some finish or expire (a flood of `/auth/*/start` cannot grow memory).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a started sign-in can be finished.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sign-ins under way at most.
pub const MAX_PENDING: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PendingError {
    #[error("this sign-in link is unknown or was already used; start again")]
    Unknown,
    #[error("this sign-in took longer than 10 minutes; start again")]
    Expired,
    #[error("too many sign-ins under way; try again in a few minutes")]
    Full,
}

struct Entry<T> {
    at: Instant,
    value: T,
}

/// Sign-ins under way, by `state`.
pub struct Pending<T> {
    /// Std mutex: inserts and removals only, never held across an await.
    map: Mutex<HashMap<String, Entry<T>>>,
    ttl: Duration,
    max: usize,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Self::new(PENDING_TTL, MAX_PENDING)
    }
}

impl<T> Pending<T> {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` under `state`.
    pub fn insert(&self, state: String, value: T) -> Result<(), PendingError> {
        self.insert_at(state, value, Instant::now())
    }

    pub fn insert_at(&self, state: String, value: T, now: Instant) -> Result<(), PendingError> {
        let mut map = self.lock();
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, e| now.saturating_duration_since(e.at) < ttl);
            if map.len() >= self.max {
                return Err(PendingError::Full);
            }
        }
        map.insert(state, Entry { at: now, value });
        Ok(())
    }

    /// Takes the sign-in of `state`: once only, and only within the time limit.
    pub fn take(&self, state: &str) -> Result<T, PendingError> {
        self.take_at(state, Instant::now())
    }

    pub fn take_at(&self, state: &str, now: Instant) -> Result<T, PendingError> {
        let e = self.lock().remove(state).ok_or(PendingError::Unknown)?;
        if now.saturating_duration_since(e.at) >= self.ttl {
            return Err(PendingError::Expired);
        }
        Ok(e.value)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use_and_expiry() {
        let p = Pending::new(Duration::from_secs(600), 3);
        let t0 = Instant::now();
        p.insert_at("s1".into(), 1, t0).expect("insert");
        p.insert_at("s2".into(), 2, t0).expect("insert");
        assert_eq!(p.take_at("s1", t0 + Duration::from_secs(10)), Ok(1));
        assert_eq!(
            p.take_at("s1", t0 + Duration::from_secs(11)),
            Err(PendingError::Unknown),
            "replayed state"
        );
        assert_eq!(
            p.take_at("s2", t0 + Duration::from_secs(600)),
            Err(PendingError::Expired)
        );
        assert_eq!(
            p.take_at("s2", t0),
            Err(PendingError::Unknown),
            "gone once tried"
        );
        assert_eq!(p.take_at("nope", t0), Err(PendingError::Unknown));
    }

    #[test]
    fn bounded() {
        let p = Pending::new(Duration::from_secs(600), 2);
        let t0 = Instant::now();
        p.insert_at("a".into(), (), t0).expect("a");
        p.insert_at("b".into(), (), t0).expect("b");
        assert_eq!(
            p.insert_at("c".into(), (), t0 + Duration::from_secs(1)),
            Err(PendingError::Full)
        );
        // Once the first ones have expired, they make room.
        p.insert_at("d".into(), (), t0 + Duration::from_secs(601))
            .expect("room after expiry");
        assert_eq!(p.len(), 1);
    }
}
