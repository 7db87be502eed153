//! Per-guild configuration of the bot, read by the dashboard and edited by admins, with every
//! change recorded in `config_audit_log`.

pub(crate) mod api;
mod body;
mod service;

pub use body::JsonObject;
pub use service::{
    ConfigChange, Editor, GuildConfig, GuildConfigUpdate, apply_update, load_config, parse_update,
};
