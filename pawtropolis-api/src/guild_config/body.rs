use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::{
    payload::{ParsePayload, Payload},
    registry::{MetaSchemaRef, Registry},
    types::Type,
};

use crate::error::ApiError;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON object request body documented as the schema of `T` but handed to the handler as
/// bytes, parsed by [`fields`](Self::fields) into a map, so that validation can name every bad
/// field in its 400 (poem-openapi's own parser reports type errors without the field name)
/// and tell an absent field from a `null` one. The handler parses it only after it has
/// checked who is asking: a caller who may not edit gets 403 whatever the body holds (only a
/// body over 64 KiB is refused first, with 413, as it is not read at all).
pub struct JsonObject<T> {
    bytes: bytes::Bytes,
    _schema: PhantomData<fn() -> T>,
}

impl<T> JsonObject<T> {
    /// The fields as sent; a 400 when the body is not a JSON object.
    pub fn fields(&self) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        let value: serde_json::Value = serde_json::from_slice(&self.bytes)
            .map_err(|e| ApiError::invalid(format!("body is not valid JSON: {e}")))?;
        match value {
            serde_json::Value::Object(fields) => Ok(fields),
            _ => Err(ApiError::invalid("body must be a JSON object")),
        }
    }
}

impl<T: Type> Payload for JsonObject<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type> ParsePayload for JsonObject<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let too_large =
            || ApiError::PayloadTooLarge(format!("body is larger than {MAX_BODY_BYTES} bytes"));
        if request
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_BODY_BYTES)
        {
            return Err(too_large().into());
        }
        let bytes = body
            .take()?
            .into_bytes_limit(MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => poem::Error::from(too_large()),
                other => other.into(),
            })?;
        Ok(Self {
            bytes,
            _schema: PhantomData,
        })
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonObject<T>, T: Type);
