//! Logouts made through this process, so that the live streams of a session that logs out end
//! at once, not at their next heartbeat's session check. A stream opened with a session cookie
//! watches its session; `POST /auth/logout` tells the watchers of that session only (waking
//! every stream to re-check its session would be a query per open stream per logout).

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::watch;

use super::tokens::hash_token;

/// Live watches by the hash of the session's secret (the secret itself stays out of memory
/// once its streams are gone, as it stays out of the database).
pub(crate) struct Logouts {
    inner: Mutex<Inner>,
}

struct Inner {
    sessions: HashMap<String, watch::Sender<bool>>,
    /// Size at which entries no stream watches any more are dropped: twice what was left at
    /// the last pruning, so that pruning stays linear however many sessions have streams.
    prune_at: usize,
}

/// Smallest pruning size.
const PRUNE_AT: usize = 1024;

impl Default for Logouts {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        }
    }
}

impl Logouts {
    /// A watch that turns `true` when the session with `secret` logs out here.
    pub fn watch(&self, secret: &str) -> watch::Receiver<bool> {
        let key = hash_token(secret);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = inner.sessions.get(&key) {
            return tx.subscribe();
        }
        if inner.sessions.len() >= inner.prune_at {
            inner.sessions.retain(|_, tx| tx.receiver_count() > 0);
            inner.prune_at = PRUNE_AT.max(2 * inner.sessions.len());
        }
        let (tx, rx) = watch::channel(false);
        inner.sessions.insert(key, tx);
        rx
    }

    /// The session with `secret` logged out: its watches turn `true`.
    pub fn logged_out(&self, secret: &str) {
        let key = hash_token(secret);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = inner.sessions.remove(&key) {
            tx.send_replace(true);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.sessions.len())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_logout_reaches_the_watches_of_its_session_only() {
        let logouts = Logouts::default();
        let mut a1 = logouts.watch("pws_a");
        let mut a2 = logouts.watch("pws_a");
        let b = logouts.watch("pws_b");
        logouts.logged_out("pws_a");
        a1.wait_for(|v| *v).await.unwrap();
        a2.wait_for(|v| *v).await.unwrap();
        assert!(!*b.borrow());
        // Sessions nobody watches any more are dropped once the map has grown; a watched one
        // stays and is still told.
        for i in 0..PRUNE_AT {
            drop(logouts.watch(&format!("pws_{i}")));
        }
        assert_eq!(logouts.len(), 2, "pws_b and the last one added");
        logouts.logged_out("pws_b");
        assert!(*b.borrow());
    }
}
