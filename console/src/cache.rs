//! A bounded cache of answers: each kept for its endpoint's time to live,
//! the whole bounded in bytes (oldest entries evicted first). Keys are the
//! endpoint and the canonical form of the request (its parsed fields, so
//! whitespace or key order do not matter).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// A cached answer: the JSON body and the `X-SQL-Query` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub body: Bytes,
    pub sql: Option<String>,
}

struct Entry {
    answer: Cached,
    expires: Instant,
    bytes: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Keys in insertion order, for eviction.
    order: VecDeque<String>,
    bytes: usize,
}

pub struct Cache {
    inner: Mutex<Inner>,
    bytes_max: usize,
}

impl Cache {
    pub fn new(bytes_max: usize) -> Cache {
        Cache { inner: Mutex::new(Inner::default()), bytes_max }
    }

    /// The answer for `key`, if cached and not expired.
    pub fn get(&self, key: &str, now: Instant) -> Option<Cached> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.get(key).filter(|e| e.expires > now).map(|e| e.answer.clone())
    }

    /// Keeps `answer` for `ttl`; one larger than a quarter of the bound is not kept.
    pub fn put(&self, key: String, answer: Cached, ttl: Duration, now: Instant) {
        let bytes = key.len() + answer.body.len() + answer.sql.as_ref().map_or(0, String::len);
        if ttl.is_zero() || bytes > self.bytes_max / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = inner.entries.remove(&key) {
            inner.bytes -= old.bytes;
            inner.order.retain(|k| k != &key);
        }
        // Expired entries first, then the oldest, until the new one fits.
        while inner.bytes + bytes > self.bytes_max {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= e.bytes;
            }
        }
        inner.bytes += bytes;
        inner.order.push_back(key.clone());
        inner.entries.insert(key, Entry { answer, expires: now + ttl, bytes });
        // Drop expired entries at the front as they come.
        while let Some(front) = inner.order.front() {
            match inner.entries.get(front) {
                Some(e) if e.expires <= now => {
                    let k = inner.order.pop_front().expect("a front");
                    let e = inner.entries.remove(&k).expect("an entry");
                    inner.bytes -= e.bytes;
                }
                _ => break,
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: usize) -> Cached {
        Cached { body: Bytes::from(vec![b'x'; n]), sql: None }
    }

    #[test]
    fn entries_expire_and_the_cache_stays_within_its_bound() {
        let c = Cache::new(1000);
        let t = Instant::now();
        c.put("a".into(), answer(100), Duration::from_secs(5), t);
        assert_eq!(c.get("a", t + Duration::from_secs(4)), Some(answer(100)));
        assert_eq!(c.get("a", t + Duration::from_secs(5)), None, "expired");
        for i in 0..50 {
            c.put(format!("k{i}"), answer(100), Duration::from_secs(60), t);
            assert!(c.bytes() <= 1000);
        }
        assert!(c.get("k49", t).is_some() && c.get("k0", t).is_none(), "the oldest went first");
        c.put("big".into(), answer(400), Duration::from_secs(60), t);
        assert!(c.get("big", t).is_none(), "over a quarter of the bound");
        c.put("k49".into(), answer(10), Duration::from_secs(60), t);
        assert_eq!(c.get("k49", t), Some(answer(10)), "replaced");
        assert!(c.bytes() <= 1000);
    }
}
