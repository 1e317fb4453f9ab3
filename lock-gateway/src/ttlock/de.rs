//! Lenient field decoding: TTLock sends some integers as strings (`"keyboardPwdType":
//! "3"` in its docs), some flags as booleans (`"isOnline": true`), and empty strings or
//! `null` for absent values.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

fn int_of(value: Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(b)),
        _ => None,
    }
}

/// An optional integer given as a number, a numeric string, a boolean or nothing.
pub fn opt_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<Value>::deserialize(deserializer)?.and_then(int_of))
}

/// [`opt_i64`] narrowed to `i32`; out-of-range values count as absent.
pub fn opt_i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    Ok(opt_i64(deserializer)?.and_then(|v| i32::try_from(v).ok()))
}

/// A required integer, leniently.
pub fn i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(deserializer)?;
    int_of(value.clone())
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {value}")))
}

/// A flag given as `1`/`0`, `"1"`/`"0"` or `true`/`false`.
pub fn opt_flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    Ok(opt_i64(deserializer)?.map(|v| v == 1))
}

/// A string that may arrive as a number (digits only: leading zeros already lost then).
pub fn opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}
