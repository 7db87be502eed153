//! In-process copies of what the database already holds, so hot reads skip the database.

use std::{hash::Hash, sync::Mutex};

use cached::{Cached as _, stores::LruCache};

/// A bounded least-recently-used map behind a mutex. Freshness is decided by the caller (with
/// the API's clock), so entries carry their own timestamps.
pub(crate) struct Lru<K: Hash + Eq + Clone, V: Clone> {
    inner: Mutex<LruCache<K, V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.cache_get(key).cloned()
    }

    pub fn put(&self, key: K, value: V) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.cache_set(key, value);
    }

    pub fn remove(&self, key: &K) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = guard.cache_remove(key);
    }
}
