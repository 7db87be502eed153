//! Discord identities: `GET /api/users/resolve` and the resolver other modules call.

pub(crate) mod api;
pub mod avatar;
pub mod cache;
mod discord_limits;
mod expand;
mod holds;
pub(crate) mod memory;
mod ratelimit;
mod resolver;
pub mod source;

pub use api::ResolveReply;
pub use discord_limits::DiscordRateLimits;
pub use expand::{Expand, Shown, identities_for, warnings_last};
pub use ratelimit::{RateDecision, ResolveRateLimiter};
pub use resolver::{IdentityOrigin, IdentityResolver, MAX_IDS, Resolution, ResolvedUser};
#[cfg(feature = "serenity-cache")]
pub use source::SerenityCacheSource;
pub use source::{DiscordIdentity, FetchError, IdentitySource, RateLimitScope, SerenityHttpSource};
