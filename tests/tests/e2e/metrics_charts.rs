//! `GET /api/metrics/timeseries` and `GET /api/metrics/latency`: exact buckets, edges, time
//! zones and percentiles, on both databases.

use pawtropolis_tests::{Backend, GUILD_A, GUILD_B, TestApp, backends, run_cli};
use serde_json::{Value, json};

const M: &str = "700000000000000001";
const U: &str = "800000000000000001";
// 2025-10-21T00:30:00Z: off every hour bucket boundary (on a 15-minute slot boundary; the
// seams test moves it off those too).
const NOW: i64 = 1_761_006_600;
const WEEK: i64 = 7 * 86_400;

/// The server at `now` with its chart cache off, and a token for guild A.
async fn uncached(backend: &Backend, now: i64) -> (TestApp, String) {
    let app = TestApp::spawn_with(
        backend,
        &["--now", &now.to_string(), "--metrics-cache-secs", "0"],
    )
    .await;
    let token = app.token(&[GUILD_A]).await;
    (app, token)
}

async fn get(app: &TestApp, token: &str, query: &str) -> Value {
    let (s, body) = app
        .get_json(&format!("/api/metrics/{query}&guild_id={GUILD_A}"), token)
        .await;
    assert_eq!(s, 200, "{query}: {body}");
    body
}

fn bucket<'a>(body: &'a Value, ts: &str) -> &'a Value {
    body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["timestamp"] == ts)
        .unwrap_or_else(|| panic!("no bucket {ts}"))
}

fn total(body: &Value, field: &str) -> i64 {
    body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["counts"][field].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn grid_edges_and_action_mapping() {
    for backend in backends() {
        let (app, token) = uncached(&backend, NOW).await;

        // An empty guild: the full grid of zero buckets.
        let empty = get(&app, &token, "timeseries?window=7d&bucket=1h").await;
        assert_eq!(
            empty["buckets"].as_array().unwrap().len(),
            169,
            "7d/1h has 7*24+1 buckets"
        );
        assert_eq!(empty["buckets"][0]["timestamp"], "2025-10-14T00:00:00Z");
        assert_eq!(empty["buckets"][168]["timestamp"], "2025-10-21T00:00:00Z");
        assert_eq!(empty["start"], "2025-10-14T00:30:00Z");
        assert_eq!(empty["end"], "2025-10-21T00:30:00Z");
        assert_eq!(empty["tz"], "UTC");
        assert!(
            empty["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["counts"] == json!({"submitted":0,"claim":0,"accept":0,"reject":0}))
        );
        assert_eq!(
            get(&app, &token, "timeseries?window=30d&bucket=6h").await["buckets"]
                .as_array()
                .unwrap()
                .len(),
            121
        );
        assert_eq!(
            get(&app, &token, "timeseries?window=90d&bucket=1d").await["buckets"]
                .as_array()
                .unwrap()
                .len(),
            91
        );

        let db = &app.tdb;
        let at = |t: i64, action: &'static str| async move {
            db.insert_action(GUILD_A, action, M, Some(U), None, t, None)
                .await;
        };
        at(NOW - WEEK, "claim").await; // exactly now - window: out
        at(NOW - WEEK + 1, "claim").await; // in, first bucket
        at(NOW, "claim").await; // exactly now: in, last bucket
        at(NOW + 1, "claim").await; // the future: out
        // Every stored name maps; unknown ones are ignored. 2025-10-20T05:59:59Z and 06:00:00Z.
        let b = 1_760_939_999;
        for action in [
            "app_submitted",
            "claim",
            "approve",
            "accept",
            "reject",
            "perm_reject",
            "kick",
            "unclaim",
            "need_info",
            "brand_new_action",
        ] {
            at(b, action).await;
        }
        at(b + 1, "approve").await;
        db.insert_action("999999999999999999", "claim", M, None, None, b, None)
            .await;

        let hourly = get(&app, &token, "timeseries?window=7d&bucket=1h").await;
        assert_eq!(hourly["buckets"].as_array().unwrap().len(), 169);
        assert_eq!(
            bucket(&hourly, "2025-10-14T00:00:00Z")["counts"]["claim"],
            1,
            "now - window is out, +1 s is in"
        );
        assert_eq!(
            bucket(&hourly, "2025-10-21T00:00:00Z")["counts"]["claim"],
            1,
            "now is in, now + 1 s is out"
        );
        assert_eq!(
            bucket(&hourly, "2025-10-20T05:00:00Z")["counts"],
            json!({"submitted": 1, "claim": 1, "accept": 2, "reject": 2})
        );
        assert_eq!(
            bucket(&hourly, "2025-10-20T06:00:00Z")["counts"],
            json!({"submitted": 0, "claim": 0, "accept": 1, "reject": 0})
        );
        assert_eq!(total(&hourly, "claim"), 3);
        assert_eq!(total(&hourly, "accept"), 3);

        let six = get(&app, &token, "timeseries?window=7d&bucket=6h").await;
        assert_eq!(bucket(&six, "2025-10-20T00:00:00Z")["counts"]["accept"], 2);
        assert_eq!(bucket(&six, "2025-10-20T06:00:00Z")["counts"]["accept"], 1);
        let daily = get(&app, &token, "timeseries?window=7d&bucket=1d").await;
        assert_eq!(daily["buckets"].as_array().unwrap().len(), 8);
        assert_eq!(
            bucket(&daily, "2025-10-20T00:00:00Z")["counts"],
            json!({"submitted": 1, "claim": 1, "accept": 3, "reject": 2})
        );

        // A row written after the last answer is in the next one (the derived tables catch up).
        at(b, "reject").await;
        let again = get(&app, &token, "timeseries?window=7d&bucket=1h").await;
        assert_eq!(
            bucket(&again, "2025-10-20T05:00:00Z")["counts"]["reject"],
            3
        );

        for (q, needle) in [
            ("timeseries?bucket=2h", "1h, 6h, 1d"),
            ("timeseries?window=1y", "7d, 30d, 90d"),
            ("latency?tz=Mars/Base", "tz"),
        ] {
            let (s, body) = app
                .get_json(&format!("/api/metrics/{q}&guild_id={GUILD_A}"), &token)
                .await;
            assert_eq!(s, 400, "{q}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains(needle),
                "{q}: {body}"
            );
        }
        app.finish().await;
    }
}

#[tokio::test]
async fn time_zones_dst_and_half_hour_offsets() {
    // 2025-11-05T12:00:00Z: the week includes New York's fall-back day (2025-11-02).
    let now: i64 = 1_762_344_000;
    for backend in backends() {
        let (app, token) = uncached(&backend, now).await;
        let db = &app.tdb;
        // 2025-11-03T04:30:00Z is 23:30 on Nov 2 in New York (EST, -05:00).
        db.insert_action(GUILD_A, "claim", M, None, None, 1_762_144_200, None)
            .await;
        // 2025-11-02T04:00:00Z is local midnight (EDT, -04:00).
        db.insert_action(GUILD_A, "claim", M, None, None, 1_762_056_000, None)
            .await;
        // 2025-11-02T03:59:59Z is still Nov 1 locally.
        db.insert_action(GUILD_A, "claim", M, None, None, 1_762_055_999, None)
            .await;

        let daily = get(
            &app,
            &token,
            "timeseries?window=7d&bucket=1d&tz=America/New_York",
        )
        .await;
        assert_eq!(daily["tz"], "America/New_York");
        let nov2 = bucket(&daily, "2025-11-02T00:00:00-04:00");
        assert_eq!(nov2["counts"]["claim"], 2, "{daily}");
        assert_eq!(
            bucket(&daily, "2025-11-01T00:00:00-04:00")["counts"]["claim"],
            1
        );
        let next = bucket(&daily, "2025-11-03T00:00:00-05:00");
        assert_eq!(next["counts"]["claim"], 0);
        assert_eq!(daily["end"], "2025-11-05T07:00:00-05:00");

        let hourly = get(
            &app,
            &token,
            "timeseries?window=7d&bucket=1h&tz=America/New_York",
        )
        .await;
        let nov2_hours = hourly["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["timestamp"].as_str().unwrap().starts_with("2025-11-02"))
            .count();
        assert_eq!(nov2_hours, 25, "the fall-back day has 25 hourly buckets");
        let twice: Vec<&str> = hourly["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["timestamp"].as_str().unwrap())
            .filter(|t| t.starts_with("2025-11-02T01:00:00"))
            .collect();
        assert_eq!(
            twice,
            ["2025-11-02T01:00:00-04:00", "2025-11-02T01:00:00-05:00"]
        );

        // Asia/Kolkata (+05:30): local hours start at half past the UTC hour.
        db.insert_action(GUILD_A, "approve", M, None, None, 1_762_320_599, None)
            .await; // 05:29:59Z
        db.insert_action(GUILD_A, "approve", M, None, None, 1_762_320_600, None)
            .await; // 05:30:00Z
        let ist = get(
            &app,
            &token,
            "timeseries?window=7d&bucket=1h&tz=Asia/Kolkata",
        )
        .await;
        assert!(
            ist["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["timestamp"].as_str().unwrap().ends_with(":00:00+05:30"))
        );
        assert_eq!(
            bucket(&ist, "2025-11-05T10:00:00+05:30")["counts"]["accept"],
            1
        );
        assert_eq!(
            bucket(&ist, "2025-11-05T11:00:00+05:30")["counts"]["accept"],
            1
        );
        let ist_days = get(
            &app,
            &token,
            "timeseries?window=7d&bucket=1d&tz=Asia/Kolkata",
        )
        .await;
        assert_eq!(
            bucket(&ist_days, "2025-11-05T00:00:00+05:30")["counts"]["accept"],
            2
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn latency_percentiles_by_hand() {
    for backend in backends() {
        let (app, token) = uncached(&backend, NOW).await;
        let db = &app.tdb;
        let ins = |action: &'static str, app_id: &'static str, t: i64| async move {
            db.insert_action(GUILD_A, action, M, Some(U), Some(app_id), t, None)
                .await;
        };
        // Day 2025-10-20 (1_760_918_400 = 00:00Z).
        let d = 1_760_918_400;
        ins("app_submitted", "a", d + 100).await;
        ins("approve", "a", d + 200).await; // 100 s
        ins("app_submitted", "b", d).await;
        ins("app_submitted", "b", d + 1_000).await; // resubmitted: the latest before the decision counts
        ins("reject", "b", d + 1_300).await; // 300 s
        ins("app_submitted", "c", d + 10).await;
        ins("accept", "c", d + 1_010).await; // 1000 s: first decision
        ins("perm_reject", "c", d + 50_000).await; // decided twice: only the first counts
        ins("approve", "d", d + 500).await; // no submission: left out
        ins("app_submitted", "e", d + 2_000).await;
        ins("claim", "e", d + 2_100).await; // claimed, not decided: left out
        ins("app_submitted", "f", d + 20).await;
        ins("approve", "f", d + 4_020).await; // 4000 s

        let body = get(&app, &token, "latency?window=7d&bucket=1d").await;
        assert_eq!(body["buckets"].as_array().unwrap().len(), 8);
        let day = bucket(&body, "2025-10-20T00:00:00Z");
        // Times 100, 300, 1000, 4000: mean 1350, p50 rank 2 -> 300, p95 rank 4 -> 4000.
        assert_eq!(
            day,
            &json!({"timestamp": "2025-10-20T00:00:00Z", "count": 4, "avg_response_time_s": 1350,
                    "p50_response_time_s": 300, "p95_response_time_s": 4000}),
            "on {}",
            backend.name()
        );
        let empty = bucket(&body, "2025-10-19T00:00:00Z");
        assert_eq!(
            empty,
            &json!({"timestamp": "2025-10-19T00:00:00Z", "count": 0, "avg_response_time_s": null,
                                  "p50_response_time_s": null, "p95_response_time_s": null})
        );
        let hourly = get(&app, &token, "latency?window=7d&bucket=1h").await;
        assert_eq!(hourly["buckets"].as_array().unwrap().len(), 169);
        assert_eq!(bucket(&hourly, "2025-10-20T00:00:00Z")["count"], 3);
        assert_eq!(bucket(&hourly, "2025-10-20T01:00:00Z")["count"], 1);

        // A decision written later but dated earlier moves app f's first decision to 00:08:40Z
        // (500 s): the old slot loses it, the new one gains it.
        ins("reject", "f", d + 520).await;
        let hourly = get(&app, &token, "latency?window=7d&bucket=1h").await;
        assert_eq!(bucket(&hourly, "2025-10-20T01:00:00Z")["count"], 0);
        let first = bucket(&hourly, "2025-10-20T00:00:00Z");
        assert_eq!(first["count"], 4);
        assert_eq!(first["p95_response_time_s"], 1000);
        assert_eq!(first["avg_response_time_s"], 475);
        app.finish().await;
    }
}

#[tokio::test]
async fn not_modified_with_a_matching_etag() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, &["--now", &NOW.to_string()]).await;
        let token = app.token(&[GUILD_A]).await;
        for op in ["timeseries", "latency"] {
            let url = format!(
                "/api/metrics/{op}?guild_id={GUILD_A}&window=30d&bucket=6h&tz=Europe/Paris"
            );
            app.assert_revalidates(&url, &token, "private, max-age=300")
                .await;
        }
        app.finish().await;
    }
}

/// Rows edited by hand are counted as they are now once the metrics tables are rebuilt
/// (`rebuild-metrics`); on PostgreSQL the figures come from `action_log` directly.
#[tokio::test]
async fn rebuild_metrics_counts_rows_as_they_are_now() {
    for backend in backends() {
        let (app, token) = uncached(&backend, NOW).await;
        for i in 0..3 {
            app.tdb
                .insert_action(GUILD_A, "claim", M, Some(U), None, NOW - 100 + i, None)
                .await;
        }
        let before = get(&app, &token, "timeseries?window=7d&bucket=1h").await;
        assert_eq!(total(&before, "claim"), 3);
        app.tdb
            .exec(
                "UPDATE action_log SET action = 'reject' WHERE id = (SELECT MIN(id) FROM action_log)",
                vec![],
            )
            .await;
        let stale = get(&app, &token, "timeseries?window=7d&bucket=1h").await;
        let out = run_cli(&app.tdb.url, &["rebuild-metrics"]).await.unwrap();
        let after = get(&app, &token, "timeseries?window=7d&bucket=1h").await;
        match backend {
            Backend::Sqlite => {
                assert_eq!(total(&stale, "claim"), 3, "counted when inserted");
                assert!(out.contains("rebuilt"), "{out}");
            }
            Backend::Postgres(_) => {
                assert_eq!(total(&stale, "claim"), 2, "read directly");
                assert!(out.contains("nothing to rebuild"), "{out}");
            }
        }
        assert_eq!(
            (total(&after, "claim"), total(&after, "reject")),
            (2, 1),
            "{}",
            backend.name()
        );
        app.finish().await;
    }
}

/// `rebuild-metrics` run by another process while the server answers charts: every reply
/// counts every row (the server follows the rebuild to its end rather than failing on the
/// moving watermark, or reading tables the rebuild has just emptied).
#[tokio::test]
async fn a_rebuild_in_another_process_never_shows_partial_figures() {
    const ROWS: i64 = 200_000;
    let (app, token) = uncached(&Backend::Sqlite, NOW).await;
    // Ten of the rebuild's 20,000-id transactions, spread over the last six days.
    app.tdb
        .exec(
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) \
                 INSERT INTO action_log (guild_id, actor_id, subject_id, action, created_at_s) \
                 SELECT $1, $2, $3, 'claim', $4 - (i * 2) FROM n"
            ),
            vec![GUILD_A.into(), M.into(), U.into(), NOW.into()],
        )
        .await;
    let query = "timeseries?window=7d&bucket=1h";
    assert_eq!(total(&get(&app, &token, query).await, "claim"), ROWS);

    let done = std::sync::atomic::AtomicBool::new(false);
    let rebuild = async {
        let out = run_cli(&app.tdb.url, &["rebuild-metrics"]).await.unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    };
    let reads = async {
        let mut n = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            // `get` asserts a 200.
            assert_eq!(total(&get(&app, &token, query).await, "claim"), ROWS);
            n += 1;
        }
        n
    };
    let (out, reads) = tokio::join!(rebuild, reads);
    assert!(out.contains("rebuilt"), "{out}");
    assert!(reads >= 1);
    assert_eq!(total(&get(&app, &token, query).await, "claim"), ROWS);
    app.finish().await;
}

/// With the server's cache on, each combination of parameters is its own entry: a reply cached
/// for one is never served for another.
#[tokio::test]
async fn cached_replies_are_keyed_by_every_parameter() {
    let app = TestApp::spawn_with(&Backend::Sqlite, &["--now", &NOW.to_string()]).await;
    let token = app.token(&[GUILD_A, GUILD_B]).await;
    app.tdb
        .insert_action(GUILD_A, "claim", M, Some(U), None, NOW - 100, None)
        .await;
    let buckets = |b: &Value| b["buckets"].as_array().unwrap().len();
    let mut seen = Vec::new();
    for chart in ["timeseries", "latency"] {
        for (query, count, tz) in [
            ("window=7d&bucket=1h", 169, "UTC"),
            ("window=7d&bucket=6h", 29, "UTC"),
            ("window=30d&bucket=1h", 721, "UTC"),
            ("window=7d&bucket=1h&tz=Asia/Kolkata", 169, "Asia/Kolkata"),
        ] {
            // Twice: the second answer comes from the cache.
            for _ in 0..2 {
                let body = get(&app, &token, &format!("{chart}?{query}")).await;
                assert_eq!(
                    (buckets(&body), body["tz"].as_str()),
                    (count, Some(tz)),
                    "{chart}?{query}"
                );
                if chart == "timeseries" {
                    assert_eq!(total(&body, "claim"), 1, "{chart}?{query}");
                }
                seen.push(body["buckets"][0]["timestamp"].clone());
            }
        }
    }
    // Kolkata's grid starts on its own midnight (+05:30), not on UTC's.
    assert!(
        seen.iter().any(|t| t.as_str().unwrap().ends_with("+05:30")),
        "{seen:?}"
    );
    let (s, other) = app
        .get_json(
            &format!("/api/metrics/timeseries?window=7d&bucket=1h&guild_id={GUILD_B}"),
            &token,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        total(&other, "claim"),
        0,
        "another guild's reply is its own"
    );
    app.finish().await;
}

/// The window is (now − window, now], exact to the second at both edges and at the seams
/// between the partial 15-minute slots at its ends and the whole slots between (which SQLite
/// reads from its derived tables), with "now" off every slot boundary.
#[tokio::test]
async fn window_edges_and_slot_seams_to_the_second() {
    // 7 min 17 s past a slot boundary.
    let now = NOW + 437;
    let (lo, hi) = (now - WEEK, now);
    let first_full = lo.div_euclid(900) * 900 + 900;
    let last_slot = hi.div_euclid(900) * 900;
    assert!(lo % 900 != 0 && first_full - lo < 900 && hi > last_slot);
    let decisions = [
        lo - 1,
        lo,
        lo + 1,
        first_full - 1,
        first_full,
        first_full + 1,
        last_slot - 1,
        last_slot,
        last_slot + 1,
        hi - 1,
        hi,
        hi + 1,
    ];
    let inside = |t: i64| lo < t && t <= hi;
    for backend in backends() {
        let (app, token) = uncached(&backend, now).await;
        for (i, t) in decisions.iter().enumerate() {
            let app_id = format!("app-{i}");
            app.tdb
                .insert_action(
                    GUILD_A,
                    "app_submitted",
                    U,
                    Some(U),
                    Some(&app_id),
                    t - 30,
                    None,
                )
                .await;
            app.tdb
                .insert_action(GUILD_A, "approve", M, Some(U), Some(&app_id), *t, None)
                .await;
        }
        let ts = get(&app, &token, "timeseries?window=7d&bucket=1h").await;
        assert_eq!(
            (total(&ts, "accept"), total(&ts, "submitted")),
            (
                decisions.iter().filter(|t| inside(**t)).count() as i64,
                decisions.iter().filter(|t| inside(**t - 30)).count() as i64
            ),
            "on {}",
            backend.name()
        );
        let lat = get(&app, &token, "latency?window=7d&bucket=1h").await;
        let counted: i64 = lat["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["count"].as_i64().unwrap())
            .sum();
        assert_eq!(
            counted,
            decisions.iter().filter(|t| inside(**t)).count() as i64,
            "on {}",
            backend.name()
        );
        assert!(
            lat["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["count"] != 0)
                .all(|b| b["avg_response_time_s"] == 30),
            "{lat}"
        );
        app.finish().await;
    }
}
