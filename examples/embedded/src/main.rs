//! Serves the embedded example (see `lib.rs`).
//!
//! ```sh
//! HOST_ADMIN_SECRET=s3cret cargo run -p pawtropolis-embedded-example
//! curl -H "Authorization: Bearer s3cret" "http://127.0.0.1:3001/api/logs?guild_id=424242424242424242"
//! ```

use pawtropolis_api::{WRITE_TIMEOUT, WriteTimeoutAcceptor};
use poem::{
    Server,
    listener::{Listener as _, TcpListener},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let url = std::env::var("PAWTROPOLIS_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://data/embedded.db?mode=rwc".into());
    migration::cli::ensure_sqlite_dir(&url)?;
    let db = pawtropolis_api::db::connect(&url, 4).await?;
    migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None }).await?;

    let secret = std::env::var("HOST_ADMIN_SECRET").unwrap_or_default();
    let api = pawtropolis_embedded_example::build_api(db, secret).await?;
    let app = pawtropolis_embedded_example::app(&api);
    // A live stream whose client stops reading would otherwise hold its connection for good.
    let tcp = TcpListener::bind("127.0.0.1:3001").into_acceptor().await?;
    Server::new_with_acceptor(WriteTimeoutAcceptor::new(tcp, WRITE_TIMEOUT))
        .run(app)
        .await?;
    Ok(())
}
