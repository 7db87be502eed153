//! `?expand=identity`: names and avatars of the moderators in a reply, resolved in batches.

use std::collections::{HashMap, HashSet};

use poem_openapi::Enum;

use super::{IdentityResolver, MAX_IDS, avatar};
use crate::{payload::Warning, snowflake::Snowflake};

/// What a listing may expand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum Expand {
    /// Attach each moderator's `display_name` and `avatar_url`, and a `warnings` array.
    #[oai(rename = "identity")]
    Identity,
}

/// Display name and avatar of one moderator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Name to show.
    pub display_name: String,
    /// Avatar URL.
    pub avatar_url: String,
}

/// Names and avatars for `ids` (any order, duplicates allowed), resolved with one resolver
/// call per 100 distinct ids, plus a warning for each id that could not be resolved, under each
/// spelling of it that `ids` holds (a row's `actor_id` may have spaces around the digits). Ids
/// that are not snowflakes (legacy rows) get a placeholder and a warning, and so does every id
/// when the identities cannot be read at all: an expansion never fails the reply it decorates.
pub async fn identities_for(
    resolver: &IdentityResolver,
    guild_id: &Snowflake,
    ids: impl IntoIterator<Item = &str>,
) -> (HashMap<String, Shown>, Vec<Warning>) {
    let mut distinct: Vec<Snowflake> = Vec::new();
    let mut shown = HashMap::new();
    let mut warnings = Vec::new();
    let mut seen = HashSet::new();
    let mut resolving = HashSet::new();
    // Canonical id → the other spellings the rows use (spaces around the digits): the caller
    // looks rows up by their own spelling.
    let mut spelled_as: HashMap<String, Vec<String>> = HashMap::new();
    for id in ids {
        if !seen.insert(id.to_owned()) {
            continue;
        }
        match Snowflake::parse("moderator_id", id) {
            Ok(s) => {
                if s.as_str() != id {
                    spelled_as
                        .entry(s.as_str().to_owned())
                        .or_default()
                        .push(id.to_owned());
                }
                if resolving.insert(s.clone()) {
                    distinct.push(s);
                }
            }
            Err(_) => {
                shown.insert(
                    id.to_owned(),
                    Shown {
                        display_name: id.to_owned(),
                        avatar_url: avatar::default_avatar_url(0, None),
                    },
                );
                warnings.push(Warning {
                    id: id.to_owned(),
                    code: "invalid_id".into(),
                    message: "not a Discord user id".into(),
                });
            }
        }
    }
    // One wait for Discord for the whole reply, however many batches it takes.
    let deadline = resolver.lookup_deadline();
    for batch in distinct.chunks(MAX_IDS) {
        let resolution = match resolver.resolve_users_by(guild_id, batch, deadline).await {
            Ok(resolution) => resolution,
            // The listing itself is fine: its moderators go unnamed, with a warning each,
            // rather than the page failing (the guide: "if resolver fails, include warnings").
            Err(e) => {
                tracing::warn!(error = %e, %guild_id, "could not resolve moderators; listing without names");
                for id in batch {
                    shown.insert(
                        id.as_str().to_owned(),
                        Shown {
                            display_name: id.as_str().to_owned(),
                            avatar_url: avatar::default_avatar_url(id.as_u64(), None),
                        },
                    );
                    warnings.push(Warning {
                        id: id.as_str().to_owned(),
                        code: "lookup_failed".into(),
                        message: "identities could not be read; try again shortly".into(),
                    });
                }
                continue;
            }
        };
        for user in resolution.users {
            shown.insert(
                user.id,
                Shown {
                    display_name: user.display_name,
                    avatar_url: user.avatar_url,
                },
            );
        }
        warnings.extend(resolution.warnings);
    }
    if spelled_as.is_empty() {
        return (shown, warnings);
    }
    for (canonical, spellings) in &spelled_as {
        if let Some(found) = shown.get(canonical).cloned() {
            for spelled in spellings {
                shown.insert(spelled.clone(), found.clone());
            }
        }
    }
    // A client matches warnings to rows by their `moderator_id`: one per spelling the rows
    // use, and none under a spelling no row has.
    let warnings = warnings
        .into_iter()
        .flat_map(|w| {
            let mut ids: Vec<String> = spelled_as.get(&w.id).cloned().unwrap_or_default();
            if ids.is_empty() || seen.contains(&w.id) {
                ids.insert(0, w.id.clone());
            }
            ids.into_iter().map(move |id| Warning { id, ..w.clone() })
        })
        .collect();
    (shown, warnings)
}

/// Whether a reply carrying `warnings` may be cached like one without: true when asking again
/// soon would give the same answer (Discord does not know the user, the id is not one, or no
/// Discord client is configured to ask), false when Discord was slow, down or rate limiting,
/// or the identities could not be read.
pub fn warnings_last(resolver: &IdentityResolver, warnings: &[Warning]) -> bool {
    warnings.iter().all(|w| match w.code.as_str() {
        "not_found" | "invalid_id" => true,
        "discord_unavailable" => !resolver.asks_discord(),
        _ => false,
    })
}
