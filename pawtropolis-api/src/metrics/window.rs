use poem_openapi::Enum;
use serde::Serialize;

/// How far back a metric looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, Serialize)]
pub enum Window {
    /// The last 7 days.
    #[oai(rename = "7d")]
    #[serde(rename = "7d")]
    Days7,
    /// The last 30 days.
    #[oai(rename = "30d")]
    #[serde(rename = "30d")]
    Days30,
    /// The last 90 days.
    #[oai(rename = "90d")]
    #[serde(rename = "90d")]
    Days90,
}

impl Window {
    /// Length in seconds.
    pub fn secs(self) -> i64 {
        86_400
            * match self {
                Self::Days7 => 7,
                Self::Days30 => 30,
                Self::Days90 => 90,
            }
    }

    /// The name used in parameters (`7d`, `30d`, `90d`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Days7 => "7d",
            Self::Days30 => "30d",
            Self::Days90 => "90d",
        }
    }
}
