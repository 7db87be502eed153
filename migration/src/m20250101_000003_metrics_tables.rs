//! Derived tables that make the time-series and latency metrics fast on SQLite: counts per
//! 15-minute slot and each application's response time, brought up to date from `action_log`
//! (never by triggers: the bot's inserts stay as fast as before).

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

use crate::additive::{Table, col, drop_own_table, ensure_index, ensure_table};

const ACTION_COUNTS: Table = Table {
    name: "metrics_action_counts",
    columns: &[
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("slot_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col(
            "submitted",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col(
            "claim",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col(
            "accept",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col(
            "reject",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
    ],
    addable: &[],
    constraint: Some("PRIMARY KEY (guild_id, slot_s)"),
};

const APP_LATENCY: Table = Table {
    name: "metrics_app_latency",
    columns: &[
        col("app_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("decided_at_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col("decided_slot_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col("response_s", "INTEGER", "BIGINT"),
    ],
    addable: &[],
    constraint: Some("PRIMARY KEY (app_id, guild_id)"),
};

/// Response times of the applications first decided in each 15-minute slot, as one sorted
/// text list per slot: a 90-day chart reads 8,640 short rows instead of 100,000 long ones.
const LATENCY_SLOTS: Table = Table {
    name: "metrics_latency_slots",
    columns: &[
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("slot_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col("times", "TEXT NOT NULL", "TEXT NOT NULL"),
    ],
    addable: &[],
    constraint: Some("PRIMARY KEY (guild_id, slot_s)"),
};

/// Scratch list of the slots one catch-up must rebuild.
const TOUCHED_SLOTS: Table = Table {
    name: "metrics_touched_slots",
    columns: &[
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("slot_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
    ],
    addable: &[],
    constraint: None,
};

const STATE: Table = Table {
    name: "metrics_state",
    columns: &[
        col("id", "INTEGER PRIMARY KEY", "BIGINT PRIMARY KEY"),
        col("last_action_id", "INTEGER NOT NULL", "BIGINT NOT NULL"),
    ],
    addable: &[],
    constraint: None,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::sea_orm::ConnectionTrait as _;
        ensure_table(manager, &ACTION_COUNTS).await?;
        ensure_table(manager, &APP_LATENCY).await?;
        // Covering: the latency query reads only this index.
        ensure_index(
            manager,
            "idx_metrics_app_latency_guild_time",
            "metrics_app_latency",
            "guild_id, decided_at_s, response_s",
        )
        .await?;
        ensure_index(
            manager,
            "idx_metrics_app_latency_slot",
            "metrics_app_latency",
            "guild_id, decided_slot_s",
        )
        .await?;
        ensure_table(manager, &LATENCY_SLOTS).await?;
        ensure_table(manager, &TOUCHED_SLOTS).await?;
        ensure_table(manager, &STATE).await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO metrics_state (id, last_action_id) SELECT 1, 0 \
                 WHERE NOT EXISTS (SELECT 1 FROM metrics_state WHERE id = 1)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_own_table(manager, "metrics_state").await?;
        drop_own_table(manager, "metrics_touched_slots").await?;
        drop_own_table(manager, "metrics_latency_slots").await?;
        drop_own_table(manager, "metrics_app_latency").await?;
        drop_own_table(manager, "metrics_action_counts").await
    }
}
