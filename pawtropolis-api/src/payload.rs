//! JSON replies serialized once with serde and kept as bytes.
//!
//! poem-openapi's `Json<T>` goes through an intermediate `serde_json::Value` tree on every reply;
//! hot reads here are bound by serialization, so replies are encoded straight to bytes, which
//! can also be cached and hashed for an `ETag` without encoding again. The OpenAPI document still
//! shows the schema of `T`.

use std::{
    hash::{Hash as _, Hasher as _},
    marker::PhantomData,
};

use bytes::Bytes;
use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse, Object,
    payload::Payload,
    registry::{MetaSchemaRef, Registry},
    types::Type,
};
use serde::Serialize;

use crate::error::ApiError;

/// A JSON body already encoded to bytes, documented as the schema of `T`.
pub struct JsonBytes<T> {
    bytes: Bytes,
    etag: Option<String>,
    _schema: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonBytes<T> {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            etag: self.etag.clone(),
            _schema: PhantomData,
        }
    }
}

impl<T: Serialize> JsonBytes<T> {
    /// Encodes `value`.
    pub fn encode(value: &T) -> Result<Self, ApiError> {
        serde_json::to_vec(value)
            .map(|v| Self::from_bytes(Bytes::from(v)))
            .map_err(|e| ApiError::Internal(format!("JSON encoding failed: {e}")))
    }
}

impl<T> JsonBytes<T> {
    /// Wraps bytes that are already the JSON encoding of a `T`.
    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            bytes,
            etag: None,
            _schema: PhantomData,
        }
    }

    /// Wraps bytes whose `ETag` was computed before (cached replies skip hashing again).
    pub fn from_bytes_with_etag(bytes: Bytes, etag: String) -> Self {
        Self {
            bytes,
            etag: Some(etag),
            _schema: PhantomData,
        }
    }

    /// The encoded body.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// A strong `ETag` for the body: a hash of its bytes, quoted.
    pub fn etag(&self) -> String {
        self.etag.clone().unwrap_or_else(|| etag_of(&self.bytes))
    }
}

/// A strong entity tag for `bytes`.
pub fn etag_of(bytes: &[u8]) -> String {
    // SipHash with fixed keys: deterministic for a given build, fast, and collisions only cost a
    // needless 200, never a wrong 304 on the same body.
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("\"{:016x}{:08x}\"", h.finish(), bytes.len())
}

/// True when an `If-None-Match` header value matches `etag` (a list, weak tags, or `*`).
pub fn if_none_match_matches(header: Option<&str>, etag: &str) -> bool {
    let Some(header) = header else { return false };
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag || tag.strip_prefix("W/") == Some(etag))
}

impl<T: Type> Payload for JsonBytes<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> IntoResponse for JsonBytes<T> {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type(<Self as Payload>::CONTENT_TYPE)
            .body(self.bytes)
    }
}

/// Reply of a cacheable GET: the body with its `ETag` and `Cache-Control`, or 304 when the
/// client's `If-None-Match` already names this body.
#[derive(ApiResponse)]
pub enum Cacheable<T: Type + Send> {
    /// The result.
    #[oai(status = 200)]
    Ok(
        JsonBytes<T>,
        /// Entity tag of this body; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// Caching policy, `private, max-age=N`.
        #[oai(header = "Cache-Control")]
        String,
    ),
    /// The client's copy (named by `If-None-Match`) is current.
    #[oai(status = 304)]
    NotModified(
        /// Entity tag of the current body.
        #[oai(header = "ETag")]
        String,
        /// Caching policy, `private, max-age=N`.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

impl<T: Type + Send> Cacheable<T> {
    /// Builds the reply for `body`, honouring `If-None-Match`.
    pub fn new(body: JsonBytes<T>, if_none_match: Option<&str>, max_age_secs: u64) -> Self {
        let etag = body.etag();
        let cache_control = format!("private, max-age={max_age_secs}");
        if if_none_match_matches(if_none_match, &etag) {
            Self::NotModified(etag, cache_control)
        } else {
            Self::Ok(body, etag, cache_control)
        }
    }
}

/// A warning about one id that could not be fully resolved; the reply is still a success.
#[derive(Debug, Clone, Object, Serialize, PartialEq, Eq)]
pub struct Warning {
    /// The id concerned.
    pub id: String,
    /// `not_found` (Discord does not know the user), `discord_unavailable` (Discord failed, timed
    /// out or is not configured), `rate_limited` (Discord asked us to slow down), `invalid_id`
    /// (a stored id that is not a snowflake) or `lookup_failed` (an expansion could not read the
    /// identity cache; the listing is shown without names).
    pub code: String,
    /// Explanation for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let tag = etag_of(b"{}");
        assert!(if_none_match_matches(Some(&tag), &tag));
        assert!(if_none_match_matches(
            Some(&format!("\"x\", W/{tag}")),
            &tag
        ));
        assert!(if_none_match_matches(Some("*"), &tag));
        assert!(!if_none_match_matches(Some("\"other\""), &tag));
        assert!(!if_none_match_matches(None, &tag));
    }
}
