use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use cached::{Cached as _, stores::LruTtlCache};

/// Most metric results kept at once; each is a few KB, so this bounds the cache to a few MB.
const MAX_ENTRIES: usize = 2_000;

/// Encoded metric replies, keyed by every parameter, kept for `PAWTROPOLIS_METRICS_CACHE_SECS`.
pub struct MetricsCache {
    ttl_secs: u64,
    inner: Option<Mutex<LruTtlCache<String, (Bytes, Instant)>>>,
}

impl MetricsCache {
    /// A cache keeping entries `ttl_secs` seconds; 0 disables it.
    pub fn new(ttl_secs: u64) -> Self {
        Self {
            ttl_secs,
            inner: (ttl_secs > 0)
                .then(|| Mutex::new(LruTtlCache::new(MAX_ENTRIES, Duration::from_secs(ttl_secs)))),
        }
    }

    /// Seconds an entry lives (the `max-age` of replies).
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// The cached reply for `key`, if fresh, and the seconds it stays so (the `max-age` it
    /// may be served with: a browser must not keep it past the server's own copy).
    pub fn get(&self, key: &str) -> Option<(Bytes, u64)> {
        let inner = self.inner.as_ref()?;
        let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.cache_get(key).map(|(bytes, stored)| {
            let age = stored.elapsed().as_secs();
            (bytes.clone(), self.ttl_secs.saturating_sub(age))
        })
    }

    /// Stores the reply for `key`.
    pub fn put(&self, key: String, value: Bytes) {
        if let Some(inner) = &self.inner {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            guard.cache_set(key, (value, Instant::now()));
        }
    }
}
