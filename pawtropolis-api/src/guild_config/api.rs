use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, param::Query};
use serde::Serialize;

use super::{
    Editor, GuildConfig, GuildConfigUpdate, JsonObject, apply_update, load_config, parse_update,
};
use crate::{
    ApiTags,
    auth::Auth,
    error::ApiError,
    payload::JsonBytes,
    snowflake::Snowflake,
    state::{SharedState, check_origin},
};

/// Guild configuration.
pub(crate) struct ConfigApi;

/// Result of an update.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ConfigUpdated {
    /// The configuration after the update.
    pub config: GuildConfig,
    /// Fields whose value changed (each was recorded in the audit log).
    pub changed: Vec<String>,
}

#[derive(ApiResponse)]
enum ConfigResponse {
    /// The guild's configuration.
    #[oai(status = 200)]
    Ok(JsonBytes<GuildConfig>),
}

#[derive(ApiResponse)]
enum ConfigUpdateResponse {
    /// The update was applied.
    #[oai(status = 200)]
    Ok(JsonBytes<ConfigUpdated>),
    /// The body is larger than 64 KiB.
    #[oai(status = 413)]
    #[allow(dead_code)]
    // The body's extractor answers it (an `ApiError`); listed for the document.
    PayloadTooLarge(poem_openapi::payload::Json<crate::error::ErrorBody>),
    /// The body is not sent as `application/json`.
    #[oai(status = 415)]
    #[allow(dead_code)]
    // poem-openapi answers it before the handler runs; listed for the document.
    UnsupportedMediaType(poem_openapi::payload::Json<crate::error::ErrorBody>),
}

#[poem_openapi::OpenApi(tag = "ApiTags::Config")]
impl ConfigApi {
    /// Read a guild's configuration
    ///
    /// The stored configuration, or the defaults when the guild has none yet.
    #[oai(path = "/config", method = "get", operation_id = "getConfig")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        /// Guild to read (a snowflake).
        guild_id: Query<Snowflake>,
    ) -> Result<ConfigResponse, ApiError> {
        let guild_id = guild_id.0;
        auth.principal().authorize(&guild_id)?;
        let cfg = load_config(&state.db, &guild_id).await?;
        Ok(ConfigResponse::Ok(JsonBytes::encode(&cfg)?))
    }

    /// Update a guild's configuration
    ///
    /// Changes the fields present in the body and records each changed field in the audit log
    /// (who, field, old value, new value, when). Channel and role ids must be snowflakes (17–20
    /// digits) or null; hour settings whole numbers from 0 to 87600. A 400 names the bad field.
    /// Browsers must send it from the dashboard's origin. Editing needs the guild's admin role
    /// (or an owner id, or an API token for the guild): a reviewer may read the configuration
    /// but gets 403 here.
    #[oai(path = "/config", method = "put", operation_id = "updateConfig")]
    async fn put(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        req: &Request,
        /// Guild to update (a snowflake).
        guild_id: Query<Snowflake>,
        body: JsonObject<GuildConfigUpdate>,
    ) -> Result<ConfigUpdateResponse, ApiError> {
        check_origin(&state, req)?;
        let guild_id = guild_id.0;
        let principal = auth.principal();
        principal.authorize_edit(&guild_id)?;
        let changes = parse_update(&body.fields()?)?;
        let (config, changed) = apply_update(
            &state.db,
            &guild_id,
            &changes,
            Editor::of(principal),
            state.clock.now_s(),
        )
        .await?;
        tracing::info!(guild_id = %guild_id, actor = %principal.subject, ?changed, "guild config updated");
        Ok(ConfigUpdateResponse::Ok(JsonBytes::encode(
            &ConfigUpdated { config, changed },
        )?))
    }
}
