//! Discord snowflakes: 17–20 decimal digits, kept as strings (never floats) everywhere.

use std::fmt;

use crate::error::ApiError;

/// The pattern every snowflake parameter carries in the OpenAPI document.
pub const SNOWFLAKE_PATTERN: &str = "^[0-9]{17,20}$";

/// A validated Discord snowflake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(String);

impl Snowflake {
    /// Validates `value` as the parameter or field `field`; the 400 names the field.
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        let value = value.trim();
        let ok = (17..=20).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_digit())
            && value.parse::<u64>().is_ok();
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ApiError::invalid(format!(
                "{field} must be a Discord snowflake (17 to 20 digits), got {value:?}"
            )))
        }
    }

    /// The snowflake as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The snowflake as a number (always fits: validation checked it).
    pub fn as_u64(&self) -> u64 {
        self.0.parse().unwrap_or_default()
    }

    /// Unwraps the text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Snowflake {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_17_to_20_digits() {
        assert!(Snowflake::parse("id", "12345678901234567").is_ok());
        assert!(Snowflake::parse("id", "18446744073709551615").is_ok());
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        for bad in [
            "",
            "1234567890123456",
            "123456789012345678901",
            "1234567890123456a",
            "99999999999999999999",
        ] {
            let err = Snowflake::parse("guild_id", bad).expect_err(bad);
            assert!(err.to_string().contains("guild_id"), "{err}");
        }
    }
}
