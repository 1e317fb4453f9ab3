//! AIP-158 page sizes and opaque keyset page tokens.

use uuid::Uuid;

use crate::error::FieldViolations;

/// Page size used when a request leaves `page_size` at zero.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// Largest page a request may ask for; larger requests are clamped, as AIP-158 suggests.
pub const MAX_PAGE_SIZE: i64 = 1000;

/// Validates `page_size`: negative is invalid, zero is the default, large is clamped.
pub fn page_size(requested: i32, violations: &mut FieldViolations) -> i64 {
    match requested {
        n if n < 0 => {
            violations.add("page_size", "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        0 => DEFAULT_PAGE_SIZE,
        n => i64::from(n).min(MAX_PAGE_SIZE),
    }
}

/// A page token naming the last id of the previous page. Ids are UUIDv7, so they order by
/// creation and keyset pages stay stable while rows are added.
pub fn decode_uuid_token(token: &str, violations: &mut FieldViolations) -> Option<Uuid> {
    if token.is_empty() {
        return None;
    }
    match token
        .strip_prefix("k1.")
        .and_then(|rest| Uuid::try_parse(rest).ok())
    {
        Some(id) => Some(id),
        None => {
            violations.add("page_token", "is not a token this service issued");
            None
        }
    }
}

/// The token for the page after the one ending with `last`.
pub fn encode_uuid_token(last: Uuid) -> String {
    format!("k1.{}", last.simple())
}

/// Cuts a page fetched with one extra row into the page and the next token.
pub fn finish_page<T>(mut rows: Vec<T>, size: i64, id_of: impl Fn(&T) -> Uuid) -> (Vec<T>, String) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if rows.len() > size {
        rows.truncate(size);
        let token = rows.last().map(|row| encode_uuid_token(id_of(row)));
        (rows, token.unwrap_or_default())
    } else {
        (rows, String::new())
    }
}

/// Longest request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Whether a request id has an acceptable shape (printable ASCII, not too long).
pub fn is_request_id(value: &str) -> bool {
    value.len() <= MAX_REQUEST_ID_LEN && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks the shape of a client-supplied request id; empty means "not idempotent".
pub fn request_id(value: &str, violations: &mut FieldViolations) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if !is_request_id(value) {
        violations.add(
            "request_id",
            "must be at most 128 printable ASCII characters",
        );
        return None;
    }
    Some(value.to_owned())
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_clamps_and_rejects_negative() {
        let mut v = FieldViolations::default();
        assert_eq!(page_size(0, &mut v), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5000, &mut v), MAX_PAGE_SIZE);
        assert_eq!(page_size(7, &mut v), 7);
        assert!(v.is_empty());
        page_size(-1, &mut v);
        assert_eq!(v.fields(), vec!["page_size"]);
    }

    #[test]
    fn tokens_round_trip_and_foreign_tokens_are_rejected() {
        let id = Uuid::now_v7();
        let mut v = FieldViolations::default();
        assert_eq!(decode_uuid_token(&encode_uuid_token(id), &mut v), Some(id));
        assert_eq!(decode_uuid_token("", &mut v), None);
        assert!(v.is_empty());
        assert_eq!(decode_uuid_token("garbage", &mut v), None);
        assert_eq!(v.fields(), vec!["page_token"]);
    }

    #[test]
    fn finish_page_emits_a_token_only_when_more_rows_exist() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let (page, token) = finish_page(ids.clone(), 2, |id| *id);
        assert_eq!(page, ids[..2]);
        assert_eq!(token, encode_uuid_token(ids[1]));
        let (page, token) = finish_page(ids.clone(), 3, |id| *id);
        assert_eq!(page.len(), 3);
        assert!(token.is_empty());
    }
}
