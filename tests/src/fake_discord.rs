//! A fake Discord HTTP API on 127.0.0.1: the few routes the API calls, with users and members
//! the test defines, a call counter, and switchable trouble (slow, 5xx, 404, 429).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{
    EndpointExt, IntoResponse, Response, Route, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Path},
};
use serde_json::{Value, json};

/// How the fake answers lookups of one user (or all users, as the default).
#[derive(Debug, Clone, PartialEq)]
pub enum Trouble {
    /// Answer normally.
    None,
    /// Answer after this delay.
    Slow(Duration),
    /// Answer with this HTTP status (a 5xx, say).
    Status(u16),
    /// Answer 429 with this `retry_after` (seconds).
    RateLimited(f64),
    /// Answer 429 with this `retry_after` this many more times, then normally.
    RateLimitedTimes(f64, u32),
}

/// The id under which [`FakeDiscord::set_trouble`] troubles the OAuth2 token endpoint.
pub const OAUTH_TOKEN: &str = "oauth-token";

/// A user the fake knows.
#[derive(Debug, Clone, Default)]
pub struct FakeUser {
    /// Username.
    pub username: String,
    /// Global name.
    pub global_name: Option<String>,
    /// Avatar hash.
    pub avatar: Option<String>,
    /// Legacy discriminator ("0" for new usernames).
    pub discriminator: String,
    /// Banner hash (only a user lookup, not a member lookup, carries it).
    pub banner: Option<String>,
    /// Profile accent colour (only on a user lookup, like the banner).
    pub accent_color: Option<i64>,
}

/// Guild-specific data of a member.
#[derive(Debug, Clone, Default)]
pub struct FakeMember {
    /// Nickname.
    pub nick: Option<String>,
    /// Guild avatar hash.
    pub avatar: Option<String>,
    /// Role ids.
    pub roles: Vec<String>,
}

#[derive(Default)]
struct State {
    users: Mutex<HashMap<String, FakeUser>>,
    members: Mutex<HashMap<(String, String), FakeMember>>,
    trouble: Mutex<HashMap<String, Trouble>>,
    default_trouble: Mutex<Option<Trouble>>,
    calls: Mutex<Vec<String>>,
    /// OAuth2 code -> user id.
    codes: Mutex<HashMap<String, String>>,
    /// Who Discord's consent page signs in, when a browser is sent there.
    consenting_user: Mutex<Option<String>>,
    /// Token exchanges being answered now, and the most there ever were at once.
    exchanges_now: std::sync::atomic::AtomicUsize,
    exchanges_most: std::sync::atomic::AtomicUsize,
}

/// Counts a token exchange as under way while it lives.
struct Exchanging<'a>(&'a State);

impl<'a> Exchanging<'a> {
    fn start(state: &'a State) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = state.exchanges_now.fetch_add(1, SeqCst) + 1;
        state.exchanges_most.fetch_max(now, SeqCst);
        Self(state)
    }
}

impl Drop for Exchanging<'_> {
    fn drop(&mut self) {
        self.0
            .exchanges_now
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The running fake.
#[derive(Clone)]
pub struct FakeDiscord {
    /// `http://127.0.0.1:PORT`, to pass as `PAWTROPOLIS_DISCORD_API_BASE`.
    pub base: String,
    state: Arc<State>,
}

fn user_json(id: &str, u: &FakeUser) -> Value {
    json!({
        "id": id,
        "username": u.username,
        "global_name": u.global_name,
        "avatar": u.avatar,
        "discriminator": if u.discriminator.is_empty() { "0" } else { u.discriminator.as_str() },
        "public_flags": 0,
    })
}

fn discord_error(status: StatusCode, code: i64, message: &str) -> Response {
    poem::web::Json(json!({"code": code, "message": message}))
        .with_status(status)
        .into_response()
}

async fn trouble(state: &State, user: &str) -> Option<Response> {
    let t = {
        let mut own = state.trouble.lock().unwrap();
        match own.get_mut(user) {
            // Counted down here, under the lock: each call takes one.
            Some(Trouble::RateLimitedTimes(after, n)) if *n > 0 => {
                *n -= 1;
                Some(Trouble::RateLimited(*after))
            }
            Some(Trouble::RateLimitedTimes(..)) => None,
            Some(t) => Some(t.clone()),
            None => state.default_trouble.lock().unwrap().clone(),
        }
    };
    match t {
        None | Some(Trouble::None) => None,
        Some(Trouble::Slow(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Trouble::Status(s)) => Some(discord_error(
            StatusCode::from_u16(s).unwrap(),
            0,
            "fake trouble",
        )),
        Some(Trouble::RateLimitedTimes(..)) => None,
        Some(Trouble::RateLimited(after)) => Some(
            poem::web::Json(json!({"message": "You are being rate limited.", "retry_after": after, "global": false}))
                .with_status(StatusCode::TOO_MANY_REQUESTS)
                .with_header("Retry-After", format!("{}", after.ceil() as u64))
                .into_response(),
        ),
    }
}

#[handler]
async fn get_member(
    Path((guild, user)): Path<(String, String)>,
    state: Data<&Arc<State>>,
) -> Response {
    state
        .calls
        .lock()
        .unwrap()
        .push(format!("member {guild} {user}"));
    if let Some(resp) = trouble(&state, &user).await {
        return resp;
    }
    let member = state
        .members
        .lock()
        .unwrap()
        .get(&(guild.clone(), user.clone()))
        .cloned();
    let u = state.users.lock().unwrap().get(&user).cloned();
    match (member, u) {
        (Some(m), Some(u)) => poem::web::Json(json!({
            "user": user_json(&user, &u),
            "nick": m.nick,
            "avatar": m.avatar,
            "roles": m.roles,
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
        }))
        .into_response(),
        _ => discord_error(StatusCode::NOT_FOUND, 10007, "Unknown Member"),
    }
}

#[handler]
async fn get_user(Path(user): Path<String>, state: Data<&Arc<State>>) -> Response {
    state.calls.lock().unwrap().push(format!("user {user}"));
    if let Some(resp) = trouble(&state, &user).await {
        return resp;
    }
    match state.users.lock().unwrap().get(&user).cloned() {
        Some(u) => {
            // As Discord does: the profile fields come with a user lookup only.
            let mut body = user_json(&user, &u);
            body["banner"] = json!(u.banner);
            body["accent_color"] = json!(u.accent_color);
            poem::web::Json(body).into_response()
        }
        None => discord_error(StatusCode::NOT_FOUND, 10013, "Unknown User"),
    }
}

fn bearer_user(req: &poem::Request, state: &State) -> Option<String> {
    let token = req.header("authorization")?.strip_prefix("Bearer ")?;
    let user = token.strip_prefix("user-token-")?;
    state
        .users
        .lock()
        .unwrap()
        .contains_key(user)
        .then(|| user.to_owned())
}

#[handler]
async fn oauth_token(body: String, state: Data<&Arc<State>>) -> Response {
    state.calls.lock().unwrap().push("oauth token".into());
    let _exchanging = Exchanging::start(&state);
    // Only trouble set for this route itself (the default trouble is for lookups).
    let own = state.trouble.lock().unwrap().contains_key(OAUTH_TOKEN);
    if own && let Some(resp) = trouble(&state, OAUTH_TOKEN).await {
        return resp;
    }
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2F", "/").replace("%3A", ":")))
        .collect();
    // As Discord answers: the client's credentials first (401), then the grant (400).
    let client = form.get("client_id").map(String::as_str) == Some("test-client")
        && form.get("client_secret").map(String::as_str) == Some("test-secret");
    if !client {
        return poem::web::Json(json!({"error": "invalid_client"}))
            .with_status(StatusCode::UNAUTHORIZED)
            .into_response();
    }
    let ok = form.get("grant_type").map(String::as_str) == Some("authorization_code");
    match (
        ok,
        form.get("code")
            .and_then(|c| state.codes.lock().unwrap().remove(c)),
    ) {
        (true, Some(user)) => poem::web::Json(json!({
            "access_token": format!("user-token-{user}"),
            "token_type": "Bearer",
            "expires_in": 604800,
            "scope": "identify guilds.members.read",
        }))
        .into_response(),
        _ => discord_error(StatusCode::BAD_REQUEST, 0, "invalid_grant"),
    }
}

/// Discord's consent page, approved at once for the consenting user: back to the app's
/// redirect URI with a fresh code and the app's `state`.
#[handler]
async fn authorize(req: &poem::Request, state: Data<&Arc<State>>) -> Response {
    state.calls.lock().unwrap().push("oauth authorize".into());
    let query: HashMap<String, String> = req.params().unwrap_or_default();
    let user = state.consenting_user.lock().unwrap().clone();
    match (user, query.get("redirect_uri"), query.get("state")) {
        (Some(user), Some(redirect), Some(app_state))
            if query.get("client_id").map(String::as_str) == Some("test-client") =>
        {
            let code = format!("code-{}", rand::random::<u64>());
            state.codes.lock().unwrap().insert(code.clone(), user);
            let mut to = reqwest::Url::parse(redirect).unwrap();
            to.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", app_state);
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", to.as_str())
                .finish()
        }
        _ => discord_error(StatusCode::BAD_REQUEST, 0, "invalid authorize request"),
    }
}

#[handler]
async fn me(req: &poem::Request, state: Data<&Arc<State>>) -> Response {
    state.calls.lock().unwrap().push("oauth me".into());
    match bearer_user(req, &state) {
        Some(id) => {
            let u = state
                .users
                .lock()
                .unwrap()
                .get(&id)
                .cloned()
                .unwrap_or_default();
            poem::web::Json(user_json(&id, &u)).into_response()
        }
        None => discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"),
    }
}

#[handler]
async fn my_member(
    req: &poem::Request,
    Path(guild): Path<String>,
    state: Data<&Arc<State>>,
) -> Response {
    state
        .calls
        .lock()
        .unwrap()
        .push(format!("oauth member {guild}"));
    let Some(id) = bearer_user(req, &state) else {
        return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    };
    if let Some(resp) = trouble(&state, &id).await {
        return resp;
    }
    match state.members.lock().unwrap().get(&(guild, id)) {
        Some(m) => poem::web::Json(json!({"roles": m.roles, "nick": m.nick})).into_response(),
        None => discord_error(StatusCode::NOT_FOUND, 10004, "Unknown Guild"),
    }
}

impl FakeDiscord {
    /// Makes `code` a valid OAuth2 code for `user` (once).
    pub fn add_oauth_code(&self, code: &str, user: &str) {
        self.state
            .codes
            .lock()
            .unwrap()
            .insert(code.to_owned(), user.to_owned());
    }

    /// Makes Discord's consent page sign `user` in (browser tests of the login).
    pub fn consent_as(&self, user: &str) {
        *self.state.consenting_user.lock().unwrap() = Some(user.to_owned());
    }

    /// Sets a member's roles in `guild`.
    pub fn set_roles(&self, guild: &str, id: &str, roles: &[&str]) {
        let mut members = self.state.members.lock().unwrap();
        let m = members
            .entry((guild.to_owned(), id.to_owned()))
            .or_default();
        m.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }

    /// Starts the fake on a random port.
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let app = Route::new()
            .at("/api/v10/guilds/:guild/members/:user", get(get_member))
            .at("/api/v10/users/@me", get(me))
            .at("/api/v10/users/@me/guilds/:guild/member", get(my_member))
            .at("/api/v10/users/:user", get(get_user))
            .at("/api/oauth2/token", poem::post(oauth_token))
            .at("/oauth2/authorize", get(authorize))
            .data(state.clone());
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        tokio::spawn(async move {
            poem::Server::new_with_acceptor(acceptor)
                .run(app)
                .await
                .ok();
        });
        Self {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Defines a user.
    pub fn add_user(&self, id: &str, user: FakeUser) {
        self.state.users.lock().unwrap().insert(id.to_owned(), user);
    }

    /// Makes a known user a member of `guild`.
    pub fn add_member(&self, guild: &str, id: &str, member: FakeMember) {
        self.state
            .members
            .lock()
            .unwrap()
            .insert((guild.to_owned(), id.to_owned()), member);
    }

    /// Removes a member from `guild` (the user still exists).
    pub fn remove_member(&self, guild: &str, id: &str) {
        self.state
            .members
            .lock()
            .unwrap()
            .remove(&(guild.to_owned(), id.to_owned()));
    }

    /// Trouble for lookups of one user.
    pub fn set_trouble(&self, id: &str, trouble: Trouble) {
        self.state
            .trouble
            .lock()
            .unwrap()
            .insert(id.to_owned(), trouble);
    }

    /// Trouble for every user without trouble of their own (`RateLimitedTimes` counts only
    /// as a user's own trouble).
    pub fn set_default_trouble(&self, trouble: Trouble) {
        *self.state.default_trouble.lock().unwrap() = Some(trouble);
    }

    /// The most OAuth2 token exchanges the fake was answering at one time.
    pub fn most_exchanges_at_once(&self) -> usize {
        self.state
            .exchanges_most
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every call so far (`member G U` or `user U`).
    pub fn calls(&self) -> Vec<String> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Number of calls about user `id`.
    pub fn calls_for(&self, id: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.ends_with(&format!(" {id}")))
            .count()
    }

    /// Forgets the calls counted so far.
    pub fn reset_calls(&self) {
        self.state.calls.lock().unwrap().clear();
    }
}
