//! Discord's avatar and name rules (CDN documentation).

/// Origin of Discord's CDN.
pub const CDN: &str = "https://cdn.discordapp.com";

/// Size requested for custom avatars (a power of two from 16 to 4096).
pub const AVATAR_SIZE: u32 = 128;

fn ext(hash: &str) -> &'static str {
    if hash.starts_with("a_") { "gif" } else { "png" }
}

/// A user's own avatar: `avatars/{user}/{hash}.{png|gif}`.
pub fn user_avatar_url(user_id: u64, hash: &str) -> String {
    format!(
        "{CDN}/avatars/{user_id}/{hash}.{}?size={AVATAR_SIZE}",
        ext(hash)
    )
}

/// A guild member's avatar, which wins over the user's: `guilds/{g}/users/{u}/avatars/{hash}`.
pub fn member_avatar_url(guild_id: u64, user_id: u64, hash: &str) -> String {
    format!(
        "{CDN}/guilds/{guild_id}/users/{user_id}/avatars/{hash}.{}?size={AVATAR_SIZE}",
        ext(hash)
    )
}

/// Index of the default avatar: `(id >> 22) % 6` for new usernames, `discriminator % 5` for
/// legacy users whose discriminator is not "0".
pub fn default_avatar_index(user_id: u64, discriminator: Option<u16>) -> u64 {
    match discriminator {
        Some(d) if d != 0 => u64::from(d) % 5,
        _ => (user_id >> 22) % 6,
    }
}

/// The default avatar: `embed/avatars/{i}.png`.
pub fn default_avatar_url(user_id: u64, discriminator: Option<u16>) -> String {
    format!(
        "{CDN}/embed/avatars/{}.png",
        default_avatar_index(user_id, discriminator)
    )
}

/// The effective avatar: member avatar, else user avatar, else the default. Returns the URL and
/// the hash it came from.
pub fn effective_avatar(
    guild_id: u64,
    user_id: u64,
    member_hash: Option<&str>,
    user_hash: Option<&str>,
    discriminator: Option<u16>,
) -> (String, Option<String>) {
    match (member_hash, user_hash) {
        (Some(h), _) => (member_avatar_url(guild_id, user_id, h), Some(h.to_owned())),
        (None, Some(h)) => (user_avatar_url(user_id, h), Some(h.to_owned())),
        (None, None) => (default_avatar_url(user_id, discriminator), None),
    }
}

/// Display name: guild nickname, else global name, else username.
pub fn display_name(nick: Option<&str>, global_name: Option<&str>, username: &str) -> String {
    nick.filter(|n| !n.is_empty())
        .or(global_name.filter(|g| !g.is_empty()))
        .unwrap_or(username)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_avatar_formulas() {
        // (id >> 22) % 6 for new usernames.
        let id: u64 = 697_169_405_422_862_417;
        assert_eq!(default_avatar_index(id, None), (id >> 22) % 6);
        assert_eq!(default_avatar_index(id, Some(0)), (id >> 22) % 6);
        // discriminator % 5 for legacy users.
        assert_eq!(default_avatar_index(id, Some(1337)), 2);
        assert_eq!(
            default_avatar_url(id, Some(1337)),
            "https://cdn.discordapp.com/embed/avatars/2.png"
        );
    }

    #[test]
    fn animated_and_member_avatars() {
        assert_eq!(
            user_avatar_url(1, "a_abc"),
            "https://cdn.discordapp.com/avatars/1/a_abc.gif?size=128"
        );
        assert_eq!(
            user_avatar_url(1, "abc"),
            "https://cdn.discordapp.com/avatars/1/abc.png?size=128"
        );
        let (url, hash) = effective_avatar(9, 1, Some("m"), Some("u"), None);
        assert_eq!(
            url,
            "https://cdn.discordapp.com/guilds/9/users/1/avatars/m.png?size=128"
        );
        assert_eq!(hash.as_deref(), Some("m"));
    }

    #[test]
    fn display_name_precedence() {
        assert_eq!(display_name(Some("nick"), Some("global"), "user"), "nick");
        assert_eq!(display_name(None, Some("global"), "user"), "global");
        assert_eq!(display_name(None, None, "user"), "user");
        assert_eq!(display_name(Some(""), None, "user"), "user");
    }
}
