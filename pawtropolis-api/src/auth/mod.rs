//! Who may call the API and which guilds they may read.
//!
//! Every `/api` operation takes an [`Auth`] extractor. It accepts an API token
//! (`Authorization: Bearer …`) or a session cookie (`paw_session`), asks the configured
//! [`SessionVerifier`] for the [`Principal`] behind it, and each handler then checks the
//! principal against the requested `guild_id` with [`Principal::authorize`] (or, to change a
//! guild's configuration, [`Principal::authorize_edit`]).

pub mod discord;
pub mod ended;
pub(crate) mod login;
mod principal;
mod scheme;
pub mod sessions;
pub mod throttle;
pub mod tokens;
mod verifier;

pub use principal::{GuildScope, Principal};
pub use scheme::{Auth, BearerAuth, SESSION_COOKIE, SessionCookieAuth, request_cookie};
pub use sessions::SessionStore;
pub use verifier::{ApiTokenVerifier, Credential, SessionVerifier, TOKEN_RECHECK, VerifierChain};
