//! Discord snowflakes: 17–20 decimal digits without a leading zero, kept as strings (never
//! floats) everywhere. The text is canonical (the number's own decimal form), so two spellings
//! of one id cannot slip past de-duplication or miss a cache row keyed by the other.

use std::fmt;

use crate::error::ApiError;

/// The pattern every snowflake parameter carries in the OpenAPI document: 17 to 20 digits
/// without a leading zero, at most 18446744073709551615 (a snowflake is a 64-bit number). The
/// alternatives after the first spell out the 20-digit numbers up to that bound, so that the
/// document accepts exactly the ids the server does (which also forgives spaces around them).
pub const SNOWFLAKE_PATTERN: &str = "^(?:[1-9][0-9]{16,18}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]|1844674407370955161[0-4]|18446744073709551615)$";

/// A validated Discord snowflake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Snowflake(String);

impl Snowflake {
    /// Validates `value` as the parameter or field `field`; the 400 names the field.
    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        let value = value.trim();
        let ok = (17..=20).contains(&value.len())
            && !value.starts_with('0')
            && value.bytes().all(|b| b.is_ascii_digit())
            && value.parse::<u64>().is_ok();
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ApiError::invalid(format!(
                "{field} must be a Discord snowflake (17 to 20 digits, no leading zero), got {value:?}"
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

    /// The document's pattern accepts exactly what `parse` accepts (untrimmed), around every
    /// length and the 64-bit bound.
    #[test]
    fn the_pattern_matches_parse() {
        let pattern = regex::Regex::new(SNOWFLAKE_PATTERN).unwrap_or_else(|e| panic!("{e}"));
        let max = u64::MAX;
        let mut values: Vec<String> = vec![
            max.to_string(),
            "18446744073709551616".into(),
            "18446744073709551620".into(),
            "19000000000000000000".into(),
            "99999999999999999999".into(),
            "10000000000000000000".into(),
            "1".repeat(16),
            "1".repeat(17),
            "9".repeat(19),
            "1".repeat(21),
            format!("0{}", "1".repeat(16)),
            format!(" {}", "1".repeat(17)),
        ];
        // Every number just below and above each bound of each digit of the largest one.
        let digits = max.to_string();
        for i in 0..digits.len() {
            let prefix: u128 = digits[..=i].parse().unwrap_or_default();
            let scale = 10u128.pow((digits.len() - i - 1) as u32);
            for d in [0u128, 1, 2] {
                for n in [(prefix + d) * scale, (prefix + d) * scale - 1] {
                    values.push(n.to_string());
                }
                if prefix >= d {
                    values.push(((prefix - d) * scale + scale - 1).to_string());
                }
            }
        }
        for n in (0..2_000u128).map(|k| u128::from(max) - 1_000 + k) {
            values.push(n.to_string());
        }
        for v in &values {
            let parsed = v.trim() == v && Snowflake::parse("id", v).is_ok();
            assert_eq!(pattern.is_match(v), parsed, "{v}");
        }
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        for bad in [
            "",
            "1234567890123456",
            "123456789012345678901",
            "1234567890123456a",
            "99999999999999999999",
            "0697169405422862417",
            "00000000000000000",
        ] {
            let err = Snowflake::parse("guild_id", bad).expect_err(bad);
            assert!(err.to_string().contains("guild_id"), "{err}");
        }
    }
}

/// In the OpenAPI document a snowflake is a string with [`SNOWFLAKE_PATTERN`]; parameters and
/// fields of this type are validated once, while being parsed.
mod openapi {
    use std::borrow::Cow;

    use poem_openapi::{
        registry::{MetaSchema, MetaSchemaRef},
        types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type},
    };
    use serde_json::Value;

    use super::{SNOWFLAKE_PATTERN, Snowflake};

    impl Type for Snowflake {
        const IS_REQUIRED: bool = true;
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn name() -> Cow<'static, str> {
            "string(snowflake)".into()
        }

        fn schema_ref() -> MetaSchemaRef {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                pattern: Some(SNOWFLAKE_PATTERN.to_owned()),
                ..MetaSchema::new("string")
            }))
        }

        fn as_raw_value(&self) -> Option<&Self::RawValueType> {
            Some(self)
        }

        fn raw_element_iter<'a>(
            &'a self,
        ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
            Box::new(self.as_raw_value().into_iter())
        }
    }

    fn not_a_snowflake() -> ParseError<Snowflake> {
        ParseError::custom("not a Discord snowflake (17 to 20 digits, no leading zero)")
    }

    impl ParseFromParameter for Snowflake {
        fn parse_from_parameter(value: &str) -> ParseResult<Self> {
            Snowflake::parse("value", value).map_err(|_| not_a_snowflake())
        }
    }

    impl ParseFromJSON for Snowflake {
        fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
            match value {
                Some(Value::String(s)) => {
                    Snowflake::parse("value", &s).map_err(|_| not_a_snowflake())
                }
                _ => Err(not_a_snowflake()),
            }
        }
    }

    impl ToJSON for Snowflake {
        fn to_json(&self) -> Option<Value> {
            Some(Value::String(self.0.clone()))
        }
    }
}
