//! Logouts made through this process, so that the live streams of a session that logs out end
//! at once, not at their next heartbeat's session check. A stream opened with a session cookie
//! watches its session; `POST /auth/logout` tells the watchers of that session only (waking
//! every stream to re-check its session would be a query per open stream per logout).

use std::{collections::HashMap, sync::Mutex};

use tokio::sync::watch;

/// Live watches by session secret.
#[derive(Default)]
pub(crate) struct Logouts {
    sessions: Mutex<HashMap<String, watch::Sender<bool>>>,
}

/// Entries kept before those no stream watches any more are dropped.
const PRUNE_AT: usize = 1024;

impl Logouts {
    /// A watch that turns `true` when the session with `secret` logs out here.
    pub fn watch(&self, secret: &str) -> watch::Receiver<bool> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = sessions.get(secret) {
            return tx.subscribe();
        }
        if sessions.len() >= PRUNE_AT {
            sessions.retain(|_, tx| tx.receiver_count() > 0);
        }
        let (tx, rx) = watch::channel(false);
        sessions.insert(secret.to_owned(), tx);
        rx
    }

    /// The session with `secret` logged out: its watches turn `true`.
    pub fn logged_out(&self, secret: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = sessions.remove(secret) {
            tx.send_replace(true);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or_default()
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
        // A session nobody watches any more is dropped once the map has grown.
        drop(b);
        for i in 0..PRUNE_AT {
            drop(logouts.watch(&format!("pws_{i}")));
        }
        assert!(logouts.len() <= PRUNE_AT);
        let _kept = logouts.watch("pws_kept");
        assert!(logouts.len() < PRUNE_AT);
    }
}
