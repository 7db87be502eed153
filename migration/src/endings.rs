//! When a credential ends, as the triggers of migrations 8 (SQLite) and 9 (PostgreSQL) see it.

/// One trigger: its name, the table, what fires it, the condition, the row (`NEW` or `OLD`)
/// and the column that holds the hash of the credential's secret.
pub(crate) struct EndingTrigger {
    pub name: String,
    pub table: &'static str,
    pub event: &'static str,
    pub when: &'static str,
    pub row: &'static str,
    pub hash: &'static str,
}

/// The word each credential's triggers are named with, its table, and its hash column.
const CREDENTIALS: [(&str, &str, &str); 2] = [
    ("token", "api_token", "token_hash"),
    ("session", "dashboard_session", "id_hash"),
];

/// What ends a credential: a revocation, and the deletion of a row that was not revoked (a
/// token deleted by hand; a session the login's purge found expired or idle).
const EVENTS: [(&str, &str, &str); 2] = [
    (
        "",
        "UPDATE OF revoked_at_s",
        "OLD.revoked_at_s IS NULL AND NEW.revoked_at_s IS NOT NULL",
    ),
    ("_deleted", "DELETE", "OLD.revoked_at_s IS NULL"),
];

/// Every trigger, named `<prefix>_<token|session>[_deleted]`.
pub(crate) fn ending_triggers(prefix: &'static str) -> impl Iterator<Item = EndingTrigger> {
    CREDENTIALS
        .into_iter()
        .flat_map(move |(kind, table, hash)| {
            EVENTS
                .into_iter()
                .map(move |(suffix, event, when)| EndingTrigger {
                    name: format!("{prefix}_{kind}{suffix}"),
                    table,
                    event,
                    when,
                    row: if event == "DELETE" { "OLD" } else { "NEW" },
                    hash,
                })
        })
}
