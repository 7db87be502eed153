use base64::Engine as _;

use crate::error::ApiError;

/// Position after the last row of a page: the page is ordered by `(created_at_s, id)`
/// descending, so the next page starts strictly below this pair and no row is skipped or
/// repeated, whatever is inserted meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `created_at_s` of the last row returned.
    pub created_at_s: i64,
    /// `id` of the last row returned.
    pub id: i64,
}

impl Cursor {
    /// Opaque text form handed to clients.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("v1:{}:{}", self.created_at_s, self.id))
    }

    /// Parses a cursor previously returned as `next_cursor`.
    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::invalid("cursor is not a value returned as next_cursor");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| bad())?;
        let raw = std::str::from_utf8(&raw).map_err(|_| bad())?;
        let mut parts = raw.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("v1"), Some(t), Some(id), None) => Ok(Self {
                created_at_s: t.parse().map_err(|_| bad())?,
                id: id.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at_s: 1_761_004_800,
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).ok(), Some(c));
        assert!(Cursor::decode("not-a-cursor").is_err());
        assert!(Cursor::decode("").is_err());
    }
}
