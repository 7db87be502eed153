//! Wakes the feed the moment another process writes the SQLite file.
//!
//! A bot that inserts into `action_log` over its own connection does not tell the API. The
//! feed's poll finds such rows within `PAWTROPOLIS_SSE_POLL_MS`; watching the database file and
//! its write-ahead log (inotify on Linux, through `notify`) finds them at once, so that those
//! events reach browsers about as fast as the recorder's. The poll stays as the safety net.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};

use crate::db;

/// How long after a write the feed looks a second time.
const SETTLE: Duration = Duration::from_millis(15);

/// Watches the file of `db` (a SQLite database) and notifies `wake` on writes, until `stopped`
/// changes or closes. Does nothing for an in-memory database, and only logs when the file
/// cannot be watched.
pub(crate) async fn start(
    db: &DatabaseConnection,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let file = match main_file(db).await {
        Some(f) => f,
        None => return,
    };
    let Some(dir) = file.parent().map(Path::to_path_buf) else {
        return;
    };
    let mut wal = file.clone().into_os_string();
    wal.push("-wal");
    let watched = [file.clone(), PathBuf::from(wal)];
    let written = Arc::new(Notify::new());
    let signal = written.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_))
            && event.paths.iter().any(|p| watched.contains(p))
        {
            signal.notify_one();
        }
    };
    // The directory, not the files: the log is created and removed as connections come and go.
    let watcher = RecommendedWatcher::new(handler, notify::Config::default())
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    match watcher {
        Ok(watcher) => {
            tracing::debug!(file = %file.display(), "watching the database file for other writers");
            tokio::spawn(async move {
                let _watcher: RecommendedWatcher = watcher;
                loop {
                    tokio::select! {
                        () = written.notified() => {}
                        _ = stopped.changed() => return,
                    }
                    wake.notify_one();
                    // The write seen may precede the commit becoming visible (the WAL index
                    // is updated after the frames, an fsync may come between): look again a
                    // moment later. Bursts of writes coalesce into these two looks.
                    tokio::time::sleep(SETTLE).await;
                    wake.notify_one();
                }
            });
        }
        Err(e) => tracing::warn!(
            error = %e,
            file = %file.display(),
            "cannot watch the database file; rows from other processes arrive with the poll"
        ),
    }
}

/// The file of the main database, canonical (as the watcher reports paths), if it has one.
async fn main_file(db: &DatabaseConnection) -> Option<PathBuf> {
    let rows = db::query_all(db, "PRAGMA database_list", vec![])
        .await
        .ok()?;
    let file: String = rows
        .iter()
        .find(|r| r.try_get::<String>("", "name").as_deref() == Ok("main"))?
        .try_get("", "file")
        .ok()?;
    if file.is_empty() {
        return None;
    }
    std::fs::canonicalize(file).ok()
}
