use pawtropolis_tests::{Backend, TestDb, backends, run_cli};

#[tokio::test]
async fn demo_data_generates_the_rows_asked_for() {
    for backend in backends() {
        let tdb = TestDb::new(&backend).await;
        let out = run_cli(
            &tdb.url,
            &[
                "--now",
                "1761004800",
                "demo-data",
                "--rows",
                "3000",
                "--guild",
                "123456789012345678",
                "--days",
                "30",
            ],
        )
        .await
        .unwrap();
        assert!(out.contains("inserted 3000 rows"), "{out}");
        let rows = tdb
            .rows(
                "SELECT COUNT(*) AS n, MIN(created_at_s) AS lo, MAX(created_at_s) AS hi, COUNT(DISTINCT action) AS kinds FROM action_log WHERE guild_id = '123456789012345678'",
                vec![],
            )
            .await;
        let get = |c: &str| rows[0].try_get::<i64>("", c).unwrap();
        assert_eq!(get("n"), 3000);
        assert!(
            get("lo") >= 1_761_004_800 - 30 * 86_400 - 86_400,
            "{}",
            get("lo")
        );
        assert!(get("hi") <= 1_761_004_800);
        assert!(get("kinds") >= 8, "realistic data has many kinds of action");
        tdb.cleanup().await;
    }
}

#[tokio::test]
async fn openapi_command_prints_the_document() {
    let tdb = TestDb::new(&Backend::Sqlite).await;
    let out = run_cli(&tdb.url, &["openapi"]).await.unwrap();
    assert_eq!(out, pawtropolis_api::openapi_yaml());
    assert!(out.starts_with("openapi: 3"));
}

/// Variables a developer may have exported (the README asks for `DISCORD_TOKEN` to run the
/// bot example), with values no test passes.
const POLLUTION: [(&str, &str); 5] = [
    ("DISCORD_TOKEN", "a-real-bot-token"),
    ("DISCORD_CLIENT_ID", "1234"),
    ("PAWTROPOLIS_DISCORD_API_BASE", "https://polluted.invalid"),
    ("PAWTROPOLIS_RESOLVE_RATE_PER_MIN", "7"),
    ("PAWTROPOLIS_PUBLIC_URL", "https://polluted.invalid"),
];

/// The harness parses settings blind to the environment, so no test reaches the real Discord
/// with a developer's token: this binary runs again, as a child with the variables set, only
/// for the check below.
#[test]
fn the_harness_ignores_the_developers_environment() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "e2e::cli::settings_in_a_polluted_environment",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .envs(POLLUTION)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the check did not run: {stdout}"
    );
}

#[test]
#[ignore = "run by the_harness_ignores_the_developers_environment, with its variables set"]
fn settings_in_a_polluted_environment() {
    for (name, value) in POLLUTION {
        assert_eq!(
            std::env::var(name).as_deref(),
            Ok(value),
            "run by the_harness_ignores_the_developers_environment"
        );
    }
    let s = pawtropolis_tests::settings("sqlite::memory:", &[]);
    assert_eq!(s.discord_token, None);
    assert_eq!(s.discord_client_id, None);
    assert_eq!(s.public_url, None);
    assert_eq!(s.discord_api_base, pawtropolis_server::config::DISCORD_BASE);
    assert_eq!(s.resolve_rate_per_min, 50);
}
