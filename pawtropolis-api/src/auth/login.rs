//! The Discord login routes: `GET /auth/login`, `GET /auth/callback`, `POST /auth/logout`,
//! `GET /auth/me`.

use std::sync::Arc;

use poem::{
    IntoResponse, Request, Response, Route, get, handler,
    http::{StatusCode, header},
    post,
    web::{Data, Json, Query},
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use super::{
    SESSION_COOKIE,
    discord::{DiscordLogin, guild_access, user_avatar},
    sessions::{SessionStore, SessionUser, create_session, purge_ended_sessions, revoke_session},
    throttle::{ExchangeThrottle, Held},
    tokens::hash_token,
};
use crate::{
    error::ApiError,
    identity::avatar,
    settings::LoginSettings,
    state::{ApiState, check_origin},
};

/// Cookie binding a login attempt to the browser that started it.
const STATE_COOKIE: &str = "paw_oauth_state";

/// The 503 of a callback while the token exchanges are held (see [`super::throttle`]).
const LOGINS_HELD: &str = "logins are paused for a moment (Discord is rate limiting them, or too many are under way); try again shortly";

/// Seconds a login attempt may take.
const STATE_MAX_AGE: i64 = 600;

/// Everything the login routes need.
pub(crate) struct Login {
    pub settings: LoginSettings,
    pub discord: DiscordLogin,
    pub store: SessionStore,
    /// Turns, holds and the refusal budget of calls to Discord's token endpoint.
    pub exchanges: ExchangeThrottle,
}

fn cookie(login: &LoginSettings, name: &str, value: &str, path: &str, max_age: i64) -> String {
    let secure = if login.insecure_localhost() {
        ""
    } else {
        "; Secure"
    };
    format!("{name}={value}; HttpOnly; SameSite=Lax; Path={path}; Max-Age={max_age}{secure}")
}

fn login_of(state: &ApiState) -> Result<&Login, ApiError> {
    state
        .login
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("Discord login is not configured".into()))
}

fn fail(e: ApiError) -> Response {
    poem::error::ResponseError::as_response(&e)
}

#[handler]
async fn start_login(state: Data<&Arc<ApiState>>) -> Response {
    let Ok(login) = login_of(&state) else {
        return fail(ApiError::NotFound("Discord login is not configured".into()));
    };
    let nonce = &super::tokens::random_secret();
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, login.discord.authorize_url(nonce))
        .header(
            header::SET_COOKIE,
            cookie(&login.settings, STATE_COOKIE, nonce, "/auth", STATE_MAX_AGE),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .finish()
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[handler]
async fn login_callback(
    req: &Request,
    state: Data<&Arc<ApiState>>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    match finish_login(req, &state, q).await {
        Ok(resp) => resp,
        Err(e) => fail(e),
    }
}

async fn finish_login(
    req: &Request,
    state: &ApiState,
    q: CallbackQuery,
) -> Result<Response, ApiError> {
    let login = login_of(state)?;
    if let Some(err) = q.error {
        return Err(ApiError::Forbidden(format!(
            "Discord login was not granted: {err}"
        )));
    }
    let expected = super::request_cookie(req, STATE_COOKIE);
    match (&q.state, &expected) {
        (Some(got), Some(want))
            if !want.is_empty() && bool::from(got.as_bytes().ct_eq(want.as_bytes())) => {}
        _ => {
            return Err(ApiError::invalid(
                "state does not match this browser's login attempt; start again at /auth/login",
            ));
        }
    }
    let code = q
        .code
        .filter(|c| !c.is_empty() && c.len() < 512)
        .ok_or_else(|| ApiError::invalid("code is required"))?;
    let unavailable = |e: super::discord::LoginError| match e {
        super::discord::LoginError::Unauthorized { .. } => {
            ApiError::Forbidden("Discord refused the login".into())
        }
        // The detail (addresses, database errors) is for the log, not the browser.
        other => {
            tracing::warn!(error = %other, "login callback failed");
            ApiError::Unavailable {
                retry_after_secs: 5,
                message: "the login could not be completed (Discord or the server's database failed); try again shortly"
                    .into(),
            }
        }
    };
    let held = |h: Held| ApiError::Unavailable {
        retry_after_secs: h.retry_after_secs,
        message: LOGINS_HELD.into(),
    };
    // Not waiting for a turn only to learn of a hold then.
    login.exchanges.admit().map_err(held)?;
    let token = {
        let _turn = login.exchanges.turn().await.map_err(held)?;
        // Checked with the turn in hand: a hold may have begun while it waited.
        login.exchanges.admit().map_err(held)?;
        match login.discord.exchange(&code).await {
            Err(super::discord::LoginError::RateLimited(wait)) => {
                tracing::warn!(
                    wait_ms = wait.as_millis() as u64,
                    "Discord rate limited the token exchange; logins wait"
                );
                return Err(held(login.exchanges.hold(wait)));
            }
            Err(e @ super::discord::LoginError::Unauthorized { status, .. }) => {
                // 400: a code used twice or made up. 401, on every login: a wrong client
                // secret. Discord counts 401 and 403 against this address.
                tracing::warn!(error = %e, "Discord refused a login's code");
                if status != 400
                    && let Some(h) = login.exchanges.refused()
                {
                    tracing::warn!(
                        retry_after_secs = h.retry_after_secs,
                        "{} logins refused with 401 or 403 within a minute: logins wait, so that Discord does not ban this address",
                        super::throttle::REFUSED_PER_MINUTE
                    );
                }
                return Err(unavailable(e));
            }
            other => other.map_err(unavailable)?,
        }
    };
    let me = login.discord.me(&token).await.map_err(unavailable)?;
    let access = guild_access(
        &state.db,
        &login.discord,
        &login.settings,
        &token,
        &me.id,
        true,
    )
    .await
    .map_err(unavailable)?;
    let user = SessionUser {
        display_name: avatar::display_name(None, me.global_name.as_deref(), &me.username),
        avatar_url: user_avatar(&me),
        user_id: me.id.clone(),
        username: me.username.clone(),
        guild_ids: access.guild_ids,
        admin_guild_ids: access.admin_guild_ids,
        all_guilds: access.all_guilds,
    };
    let now = state.clock.now_s();
    let secret = create_session(&state.db, &user, &token, now).await?;
    // The browser's earlier session, if it had one: its cookie is replaced below, and nobody
    // else should go on using it.
    if let Err(e) = end_browser_session(state, req, now).await {
        tracing::warn!(error = %e, "could not end the browser's earlier dashboard session");
    }
    // Housekeeping, not part of this login: a failure is logged and the login goes on.
    if let Err(e) = purge_ended_sessions(&state.db, &login.settings, now).await {
        tracing::warn!(error = %e, "could not delete ended dashboard sessions");
    }
    tracing::info!(user_id = %user.user_id, guilds = ?user.guild_ids, admin = ?user.admin_guild_ids, all = user.all_guilds, "dashboard login");
    Ok(Response::builder()
        .status(StatusCode::FOUND)
        .header(
            header::LOCATION,
            format!("{}/", login.settings.public_url.trim_end_matches('/')),
        )
        .header(
            header::SET_COOKIE,
            cookie(
                &login.settings,
                SESSION_COOKIE,
                &secret,
                "/",
                login.settings.absolute_secs,
            ),
        )
        .header(
            header::SET_COOKIE,
            cookie(&login.settings, STATE_COOKIE, "", "/auth", 0),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .finish())
}

#[handler]
async fn end_session(req: &Request, state: Data<&Arc<ApiState>>) -> Response {
    let result = async {
        let login = login_of(&state)?;
        check_origin(&state, req)?;
        end_browser_session(&state, req, state.clock.now_s()).await?;
        Ok::<_, ApiError>(
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(
                    header::SET_COOKIE,
                    cookie(&login.settings, SESSION_COOKIE, "", "/", 0),
                )
                .finish(),
        )
    }
    .await;
    result.unwrap_or_else(fail)
}

/// Revokes the session of the cookie the browser sent, if it was live, and ends its streams.
async fn end_browser_session(
    state: &ApiState,
    req: &Request,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    if let Some(c) = super::request_cookie(req, SESSION_COOKIE)
        // Nothing was live (an old or made-up cookie): there is no stream to end, and marking
        // it ended would let anyone fill that map.
        && revoke_session(&state.db, &c, now).await?
    {
        state.ended.ended(&hash_token(&c));
    }
    Ok(())
}

/// `GET /auth/me`.
#[derive(Serialize)]
struct Me {
    user_id: String,
    username: String,
    display_name: String,
    avatar_url: String,
    guild_ids: Vec<String>,
    admin_guild_ids: Vec<String>,
    all_guilds: bool,
}

#[handler]
async fn current_user(req: &Request, state: Data<&Arc<ApiState>>) -> Response {
    let result = async {
        let login = login_of(&state)?;
        let Some(c) = super::request_cookie(req, SESSION_COOKIE) else {
            return Err(ApiError::Unauthorized("not logged in".into()));
        };
        match login.store.user(&c).await? {
            Some(u) => Ok(Json(Me {
                user_id: u.user_id,
                username: u.username,
                display_name: u.display_name,
                avatar_url: u.avatar_url,
                guild_ids: u.guild_ids,
                admin_guild_ids: u.admin_guild_ids,
                all_guilds: u.all_guilds,
            })
            .with_header(header::CACHE_CONTROL, "no-store")
            .into_response()),
            None => Err(ApiError::Unauthorized(
                "the session is invalid, expired or logged out".into(),
            )),
        }
    }
    .await;
    result.unwrap_or_else(fail)
}

/// The login routes, to nest at `/auth`.
pub(crate) fn routes() -> Route {
    Route::new()
        .at("/login", get(start_login))
        .at("/callback", get(login_callback))
        .at("/logout", post(end_session))
        .at("/me", get(current_user))
}
