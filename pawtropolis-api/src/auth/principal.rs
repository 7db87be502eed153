use std::collections::BTreeSet;

use crate::{error::ApiError, snowflake::Snowflake};

/// The guilds a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuildScope {
    /// Every guild (a host bot's own trusted verifier may grant this).
    All,
    /// Only these guild ids.
    Only(BTreeSet<String>),
}

impl GuildScope {
    /// True when `guild_id` is within the scope.
    pub fn allows(&self, guild_id: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.contains(guild_id),
        }
    }
}

/// An authenticated caller: who it is, which guilds it may read and which guilds'
/// configuration it may edit.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Stable identifier of the caller for logs and per-caller limits, such as `token:12` or
    /// `user:697169405422862417`.
    pub subject: String,
    /// The Discord user behind the session, when it is a person.
    pub user_id: Option<String>,
    /// Guilds this principal may read.
    pub guilds: GuildScope,
    /// Guilds whose configuration (`PUT /api/config`) this principal may edit: a guild's
    /// admins, not its reviewers. Only guilds it may also read count.
    pub edits: GuildScope,
}

impl Principal {
    /// A principal for an API token scoped to `guilds`. Tokens are made by an operator with
    /// the CLI, for scripts: they may edit the configuration of the guilds they may read.
    pub fn token(id: i64, guilds: impl IntoIterator<Item = String>) -> Self {
        let guilds = GuildScope::Only(guilds.into_iter().collect());
        Self {
            subject: format!("token:{id}"),
            user_id: None,
            edits: guilds.clone(),
            guilds,
        }
    }

    /// Answers 403 unless this principal may edit the configuration of `guild_id` (and
    /// read it).
    pub fn authorize_edit(&self, guild_id: &Snowflake) -> Result<(), ApiError> {
        self.authorize(guild_id)?;
        if self.edits.allows(guild_id.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this session may read guild {guild_id} but not edit its configuration (that needs the guild's admin role)"
            )))
        }
    }

    /// Answers 403 unless this principal may read `guild_id`.
    pub fn authorize(&self, guild_id: &Snowflake) -> Result<(), ApiError> {
        if self.guilds.allows(guild_id.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this session may not read guild {guild_id}"
            )))
        }
    }
}
