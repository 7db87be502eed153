//! `?expand=identity`: names and avatars of the moderators in a reply, resolved in batches.

use std::collections::HashMap;

use poem_openapi::Enum;

use super::{IdentityResolver, MAX_IDS, avatar};
use crate::{error::ApiError, payload::Warning, snowflake::Snowflake};

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
/// call per 100 distinct ids, plus one warning per id that could not be resolved. Ids that are
/// not snowflakes (legacy rows) get a placeholder and a warning.
pub async fn identities_for(
    resolver: &IdentityResolver,
    guild_id: &Snowflake,
    ids: impl IntoIterator<Item = &str>,
) -> Result<(HashMap<String, Shown>, Vec<Warning>), ApiError> {
    let mut distinct: Vec<Snowflake> = Vec::new();
    let mut shown = HashMap::new();
    let mut warnings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id.to_owned()) {
            continue;
        }
        match Snowflake::parse("moderator_id", id) {
            Ok(s) => distinct.push(s),
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
    for batch in distinct.chunks(MAX_IDS) {
        let resolution = resolver.resolve_users(guild_id, batch).await?;
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
    Ok((shown, warnings))
}
