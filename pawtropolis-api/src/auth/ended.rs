//! Credentials that ended (a logout, a revoked API token or session), so that the live streams
//! opened with them end at once, not at their next heartbeat's check. A stream watches the
//! credential it was opened with; an ending tells the watchers of that credential only (waking
//! every stream to re-check would be a query per open stream per ending).
//!
//! Logouts and `revoke_token` calls through this process reach its streams directly. All other
//! endings (a logout through another instance, `token revoke` run from the CLI, SQL typed by
//! hand) are told by the database itself: on PostgreSQL, triggers announce every ending with
//! `NOTIFY` on [`ENDED_CHANNEL`], which the live feed's `LISTEN` connection hears, at once; on
//! SQLite, which has no `NOTIFY`, triggers record every ending in `credential_ending`, which the
//! live feed reads every second. What is missed reaches streams at their next heartbeat: an announcement
//! while an instance's `LISTEN` connection is down, endings trimmed from `credential_ending`
//! before they were read (10,000 in a burst; logged).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::tokens::hash_token;

/// PostgreSQL channel on which an ended credential is announced (by the triggers of migration
/// 9, whenever a token's or session's `revoked_at_s` is set or its live row is deleted), the
/// payload being the SHA-256 hash (hex) of its secret, as stored in `api_token.token_hash` and
/// `dashboard_session.id_hash`.
pub const ENDED_CHANNEL: &str = "pawtropolis_credential_ended";

/// Live watches by the hash of the credential's secret (the secret itself stays out of memory
/// once its streams are gone, as it stays out of the database).
pub(crate) struct EndedCredentials {
    inner: Mutex<Inner>,
}

struct Inner {
    watched: HashMap<String, watch::Sender<bool>>,
    /// Credentials that ended lately, by hash: a stream whose credential was checked just
    /// before its ending, and whose watch comes just after, must still end.
    lately: HashMap<String, Instant>,
    /// Size at which `lately` drops the endings older than [`LATELY`] (so it holds about a
    /// minute's endings, each made by a logout or a revocation).
    lately_prune_at: usize,
    /// The API stopped: every watch, past and future, has turned `true`.
    all_ended: bool,
    /// Size at which entries no stream watches any more are dropped: twice what was left at
    /// the last pruning, so that pruning stays linear however many credentials have streams.
    prune_at: usize,
}

/// Smallest pruning size.
const PRUNE_AT: usize = 1024;

/// Once `map` has grown to `prune_at`, keeps the entries `keep` wants and sets the next size
/// to twice what is left (at least [`PRUNE_AT`]), so that pruning stays linear.
fn prune<V>(map: &mut HashMap<String, V>, prune_at: &mut usize, mut keep: impl FnMut(&V) -> bool) {
    if map.len() >= *prune_at {
        map.retain(|_, v| keep(v));
        *prune_at = PRUNE_AT.max(2 * map.len());
    }
}

/// How long an ending is remembered for watches made after it: far longer than a request
/// takes from its credential check to its stream's watch.
const LATELY: Duration = Duration::from_secs(60);

impl Default for EndedCredentials {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                watched: HashMap::new(),
                lately: HashMap::new(),
                lately_prune_at: PRUNE_AT,
                all_ended: false,
                prune_at: PRUNE_AT,
            }),
        }
    }
}

impl EndedCredentials {
    /// A watch that turns `true` when the credential with `secret` ends, or the API stops (so
    /// that a stream waits on one watch, not two: a few hundred bytes less per stream).
    pub fn watch(&self, secret: &str) -> watch::Receiver<bool> {
        let key = hash_token(secret);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.all_ended
            || inner
                .lately
                .get(&key)
                .is_some_and(|at| at.elapsed() < LATELY)
        {
            return watch::channel(true).1;
        }
        if let Some(tx) = inner.watched.get(&key) {
            return tx.subscribe();
        }
        let inner = &mut *inner;
        prune(&mut inner.watched, &mut inner.prune_at, |tx| {
            tx.receiver_count() > 0
        });
        let (tx, rx) = watch::channel(false);
        inner.watched.insert(key, tx);
        rx
    }

    /// The credential whose secret hashes to `hash` ended: its watches turn `true`.
    pub fn ended(&self, hash: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = inner.watched.remove(hash) {
            tx.send_replace(true);
        }
        let inner = &mut *inner;
        prune(&mut inner.lately, &mut inner.lately_prune_at, |at| {
            at.elapsed() < LATELY
        });
        inner.lately.insert(hash.to_owned(), Instant::now());
    }

    /// The API stopped: every watch turns `true`, and so will every later one.
    pub fn end_all(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.all_ended = true;
        for (_, tx) in inner.watched.drain() {
            tx.send_replace(true);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.watched.len())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ending_reaches_the_watches_of_its_credential_only() {
        let ended = EndedCredentials::default();
        let mut a1 = ended.watch("pws_a");
        let mut a2 = ended.watch("pws_a");
        let b = ended.watch("pws_b");
        ended.ended(&hash_token("pws_a"));
        a1.wait_for(|v| *v).await.unwrap();
        a2.wait_for(|v| *v).await.unwrap();
        assert!(!*b.borrow());
        // Credentials nobody watches any more are dropped once the map has grown; a watched one
        // stays and is still told.
        for i in 0..PRUNE_AT {
            drop(ended.watch(&format!("pws_{i}")));
        }
        assert_eq!(ended.len(), 2, "pws_b and the last one added");
        ended.ended(&hash_token("pws_b"));
        assert!(*b.borrow());
        // A watch made just after its credential ended (checked just before) is ended too.
        assert!(*ended.watch("pws_a").borrow());
        assert!(!*ended.watch("pws_e").borrow());
        // Stopping ends every watch, and every one made after.
        let mut c = ended.watch("pws_c");
        ended.end_all();
        c.wait_for(|v| *v).await.unwrap();
        assert!(*ended.watch("pws_d").borrow());
        assert_eq!(ended.len(), 0);
    }
}
