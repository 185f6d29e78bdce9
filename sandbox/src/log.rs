//! The side-effect log: blocked outbound calls by exchange id, bounded in size and age.

use dashmap::DashMap;
use shadowdiff_replayer::{SideEffectSource, SideEffectsFuture};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Entry {
    at: Instant,
    effects: Vec<String>,
}

/// Shared between the sandbox (which records) and the replayer (which takes). Cheap to clone.
///
/// Entries expire after `ttl`; at most `capacity` exchanges are kept (when full, expired entries
/// are purged first, then new exchanges are refused and counted). One exchange keeps at most
/// [`SideEffectLog::MAX_PER_EXCHANGE`] entries.
#[derive(Clone)]
pub struct SideEffectLog {
    inner: Arc<Inner>,
}

struct Inner {
    map: DashMap<String, Entry>,
    ttl: Duration,
    capacity: usize,
    refused: AtomicU64,
}

impl SideEffectLog {
    /// Side effects kept per exchange; later ones are dropped.
    pub const MAX_PER_EXCHANGE: usize = 256;

    /// An empty log whose entries live `ttl` and which holds at most `capacity` exchanges.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                map: DashMap::new(),
                ttl,
                capacity: capacity.max(1),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Records a blocked call; returns false when the log is full.
    pub fn record(&self, exchange_id: &str, effect: String) -> bool {
        let inner = &self.inner;
        if !inner.map.contains_key(exchange_id) && inner.map.len() >= inner.capacity {
            self.purge_expired();
            if inner.map.len() >= inner.capacity {
                inner.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let mut entry = inner
            .map
            .entry(exchange_id.to_string())
            .or_insert_with(|| Entry {
                at: Instant::now(),
                effects: Vec::new(),
            });
        if entry.effects.len() < Self::MAX_PER_EXCHANGE {
            entry.effects.push(effect);
        }
        true
    }

    /// The side effects of an exchange, leaving them in place (for the HTTP lookup).
    pub fn get(&self, exchange_id: &str) -> Vec<String> {
        match self.inner.map.get(exchange_id) {
            Some(e) if e.at.elapsed() <= self.inner.ttl => e.effects.clone(),
            _ => Vec::new(),
        }
    }

    /// The side effects of an exchange, removing them.
    pub fn take_now(&self, exchange_id: &str) -> Vec<String> {
        match self.inner.map.remove(exchange_id) {
            Some((_, e)) if e.at.elapsed() <= self.inner.ttl => e.effects,
            _ => Vec::new(),
        }
    }

    /// Drops entries older than the TTL.
    pub fn purge_expired(&self) {
        let ttl = self.inner.ttl;
        self.inner.map.retain(|_, e| e.at.elapsed() <= ttl);
    }

    /// Exchanges held now (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether no exchange is held.
    pub fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }

    /// Exchanges refused because the log was full.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }
}

impl SideEffectSource for SideEffectLog {
    fn take<'a>(&'a self, exchange_id: &'a str) -> SideEffectsFuture<'a> {
        Box::pin(async move { self.take_now(exchange_id) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_capacity_and_age() {
        let log = SideEffectLog::new(Duration::from_millis(400), 2);
        assert!(log.record("a", "POST x/1".into()));
        assert!(log.record("a", "PUT x/2".into()));
        assert!(log.record("b", "POST x/3".into()));
        assert!(!log.record("c", "POST x/4".into()), "full");
        assert_eq!(log.refused(), 1);
        assert_eq!(log.get("a"), vec!["POST x/1", "PUT x/2"]);
        assert_eq!(log.take_now("a"), vec!["POST x/1", "PUT x/2"]);
        assert!(log.take_now("a").is_empty());
        std::thread::sleep(Duration::from_millis(500));
        assert!(log.get("b").is_empty(), "expired");
        assert!(log.record("c", "POST x/4".into()));
        // Full again (b, c): the expired `b` is purged to make room for `d`.
        assert!(
            log.record("d", "POST x/5".into()),
            "expired entries make room"
        );
        assert_eq!(log.len(), 2);
        assert_eq!(log.get("c"), vec!["POST x/4"]);
    }
}
