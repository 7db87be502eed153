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
