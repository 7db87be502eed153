//! Discord's OAuth2 endpoints, as the login needs them: code exchange, the user, and the user's
//! member roles in each configured guild.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde::Deserialize;

use crate::{db, identity::avatar, settings::LoginSettings};

/// Why a call to Discord failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Discord refused the code or token.
    #[error("Discord refused the authorization: HTTP {status} {reason}")]
    Unauthorized {
        /// 400 (a used or made-up code: `invalid_grant`), 401 (a wrong client secret or
        /// token) or 403.
        status: u16,
        /// Discord's explanation, shortened to a line.
        reason: String,
    },
    /// Discord failed or could not be reached.
    #[error("Discord could not be reached: {0}")]
    Unavailable(String),
    /// Discord rate limited the call; it may be tried again after this wait.
    #[error("Discord rate limited the call (retry after {0:?})")]
    RateLimited(Duration),
}

/// A Discord HTTP client for the login (the user's own OAuth2 token, not the bot's).
#[derive(Clone)]
pub struct DiscordLogin {
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
}

/// The logged-in user as `/users/@me` describes them.
#[derive(Debug, Clone, Deserialize)]
pub struct DiscordUser {
    /// User id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Global display name.
    pub global_name: Option<String>,
    /// Avatar hash.
    pub avatar: Option<String>,
    /// Legacy discriminator.
    pub discriminator: Option<String>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
}

#[derive(Deserialize)]
struct MemberReply {
    #[serde(default)]
    roles: Vec<String>,
}

impl DiscordLogin {
    /// A client for the configured application.
    pub fn new(login: &LoginSettings) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            base: login.discord_api_base.trim_end_matches('/').to_owned(),
            client_id: login.client_id.clone(),
            client_secret: login.client_secret.clone(),
            redirect_uri: redirect_uri(login),
        }
    }

    /// The authorize URL the browser is sent to.
    pub fn authorize_url(&self, state: &str) -> String {
        let mut url = reqwest::Url::parse(&format!("{}/oauth2/authorize", self.base))
            .unwrap_or_else(|_| {
                reqwest::Url::parse("https://discord.com/oauth2/authorize").expect("static URL")
            });
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", "identify guilds.members.read")
            .append_pair("state", state)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("prompt", "none");
        url.to_string()
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, LoginError> {
        match resp.status().as_u16() {
            200..=299 => Ok(resp),
            // Kept for the log: `invalid_grant` (a used or forged code) reads differently from
            // `invalid_client` (a wrong client secret) or a redirect URI Discord does not know.
            status @ (400 | 401 | 403) => Err(LoginError::Unauthorized {
                status,
                reason: short_body(resp).await,
            }),
            s => Err(LoginError::Unavailable(format!("HTTP {s}"))),
        }
    }

    /// Exchanges an authorization code for the user's access token.
    pub async fn exchange(&self, code: &str) -> Result<String, LoginError> {
        let resp = self
            .http
            .post(format!("{}/api/oauth2/token", self.base))
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.redirect_uri.as_str()),
            ])
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(LoginError::RateLimited(retry_after(resp).await));
        }
        let reply: TokenReply = Self::check(resp)
            .await?
            .json()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        Ok(reply.access_token)
    }

    /// The user the token belongs to.
    pub async fn me(&self, token: &str) -> Result<DiscordUser, LoginError> {
        let resp = self
            .http
            .get(format!("{}/api/v10/users/@me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        Self::check(resp)
            .await?
            .json()
            .await
            .map_err(|e| LoginError::Unavailable(e.to_string()))
    }

    /// The user's roles in `guild`, or `None` when they are not a member. Discord limits this
    /// call tightly per user, and a login asks it once per configured guild: with `may_wait`
    /// set, a 429 that asks for a short wait is waited out (and `may_wait` cleared, so that one
    /// login waits once) rather than failing the whole login.
    pub async fn member_roles(
        &self,
        token: &str,
        guild: &str,
        may_wait: &mut bool,
    ) -> Result<Option<Vec<String>>, LoginError> {
        loop {
            let resp = self
                .http
                .get(format!(
                    "{}/api/v10/users/@me/guilds/{guild}/member",
                    self.base
                ))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| LoginError::Unavailable(e.to_string()))?;
            match resp.status().as_u16() {
                404 => return Ok(None),
                429 => {
                    let wait = retry_after(resp).await;
                    if !*may_wait || wait > MAX_RATE_LIMIT_WAIT {
                        return Err(LoginError::Unavailable(format!(
                            "Discord rate limited the role check (retry after {} ms)",
                            wait.as_millis()
                        )));
                    }
                    *may_wait = false;
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    let member: MemberReply = Self::check(resp)
                        .await?
                        .json()
                        .await
                        .map_err(|e| LoginError::Unavailable(e.to_string()))?;
                    return Ok(Some(member.roles));
                }
            }
        }
    }
}

/// The start of an error reply's body, on one line, for the log (Discord answers with a short
/// JSON object; anything longer is cut).
async fn short_body(mut resp: reqwest::Response) -> String {
    const MAX: usize = 200;
    // The first chunk is plenty; a longer body is not read to its end.
    let first = resp.chunk().await.ok().flatten().unwrap_or_default();
    let text = String::from_utf8_lossy(&first[..first.len().min(4 * MAX)]);
    let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|&i| line.is_char_boundary(i))
            .unwrap_or(0);
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// Longest wait a role check sits out for a rate limit (once) before it fails.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// How long a 429 asks to wait: its body's `retry_after` (seconds, fractional), else its
/// `Retry-After` header, else a second.
async fn retry_after(resp: reqwest::Response) -> Duration {
    #[derive(Deserialize)]
    struct Limited {
        retry_after: f64,
    }
    let header = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let body = resp.json::<Limited>().await.ok().map(|l| l.retry_after);
    let secs = body.or(header).unwrap_or(1.0);
    if secs.is_finite() && secs >= 0.0 {
        Duration::from_secs_f64(secs.min(3_600.0))
    } else {
        Duration::from_secs(1)
    }
}

/// `{PAWTROPOLIS_PUBLIC_URL}/auth/callback`.
pub fn redirect_uri(login: &LoginSettings) -> String {
    format!("{}/auth/callback", login.public_url.trim_end_matches('/'))
}

/// Avatar URL of a logged-in user.
pub fn user_avatar(user: &DiscordUser) -> String {
    let id: u64 = user.id.parse().unwrap_or_default();
    match &user.avatar {
        Some(h) => avatar::user_avatar_url(id, h),
        None => avatar::default_avatar_url(
            id,
            user.discriminator.as_deref().and_then(|d| d.parse().ok()),
        ),
    }
}

/// What a user's roles let them do in the configured guilds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuildAccess {
    /// Guilds they may read: those whose configured reviewer or admin role they hold.
    pub guild_ids: Vec<String>,
    /// Guilds whose configuration they may edit: those whose admin role they hold.
    pub admin_guild_ids: Vec<String>,
    /// An owner: every guild, to read and to edit.
    pub all_guilds: bool,
}

/// What `user_id` may read and edit: the guilds whose configured reviewer or admin role they
/// hold (admins also edit); everything for an owner. `wait_once` lets a login sit out one
/// short rate limit of Discord's; a re-check, which runs inside some request, fails at once
/// instead (the access checked last keeps for a while).
pub async fn guild_access(
    db: &DatabaseConnection,
    discord: &DiscordLogin,
    login: &LoginSettings,
    token: &str,
    user_id: &str,
    wait_once: bool,
) -> Result<GuildAccess, LoginError> {
    let mut may_wait = wait_once;
    if login.owner_ids.iter().any(|o| o == user_id) {
        return Ok(GuildAccess {
            all_guilds: true,
            ..GuildAccess::default()
        });
    }
    let rows = db::query_all(
        db,
        "SELECT guild_id, reviewer_role_id, admin_role_id FROM guild_config \
         WHERE reviewer_role_id IS NOT NULL OR admin_role_id IS NOT NULL ORDER BY guild_id",
        vec![],
    )
    .await
    .map_err(|e| LoginError::Unavailable(e.to_string()))?;
    let mut access = GuildAccess::default();
    for row in rows {
        let role = |column: &str| {
            row.try_get::<Option<String>>("", column)
                .map_err(|e| LoginError::Unavailable(e.to_string()))
        };
        let guild: String = row
            .try_get("", "guild_id")
            .map_err(|e| LoginError::Unavailable(e.to_string()))?;
        let (reviewer, admin) = (role("reviewer_role_id")?, role("admin_role_id")?);
        let Some(roles) = discord.member_roles(token, &guild, &mut may_wait).await? else {
            continue;
        };
        let holds = |wanted: &Option<String>| wanted.as_ref().is_some_and(|w| roles.contains(w));
        if holds(&admin) {
            access.admin_guild_ids.push(guild.clone());
            access.guild_ids.push(guild);
        } else if holds(&reviewer) {
            access.guild_ids.push(guild);
        }
    }
    Ok(access)
}
