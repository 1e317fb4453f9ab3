//! Checks every request against its message's descriptor before a service sees it.
//!
//! Field-by-field validation lives with each RPC, but some input is unfit for any of
//! them: a NUL character cannot be stored by PostgreSQL at all, and one reaching a
//! statement fails it, and with it every other row that statement carries (a group
//! commit of other callers' decisions). A body that is not the method's message (bytes
//! cut short, a string that is not UTF-8) would otherwise reach tonic's decoder, which
//! calls it `INTERNAL`. This layer decodes the request once with the compiled
//! descriptors and refuses both with `INVALID_ARGUMENT`, naming the field, so no RPC
//! written later can forget to.

use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, Value};
use tonic::Code;
use tonic::body::Body;

use crate::error::FieldViolations;

/// Longest string accepted in any field, in bytes. RPCs set tighter limits of their own;
/// this one keeps a field no RPC bounds from carrying megabytes into a row.
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// The `ErrorInfo` domain of the refusals.
const DOMAIN: &str = "request.latchkey";

/// Largest request body read, as tonic's default decoding limit.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024 + 5;

static POOL: LazyLock<Option<DescriptorPool>> = LazyLock::new(|| {
    DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)
        .inspect_err(|error| tracing::error!(%error, "the descriptor set does not decode"))
        .ok()
});

/// The input message of a gRPC path, for methods whose client sends one message.
pub fn input_of(path: &str) -> Option<MessageDescriptor> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let method = POOL
        .as_ref()?
        .get_service_by_name(service)?
        .methods()
        .find(|m| m.name() == method)?;
    (!method.is_client_streaming()).then(|| method.input())
}

/// What is wrong with a decoded request, field by field.
pub fn violations(message: &DynamicMessage) -> FieldViolations {
    let mut violations = FieldViolations::default();
    walk(message, "", &mut violations);
    violations
}

fn walk(message: &DynamicMessage, prefix: &str, violations: &mut FieldViolations) {
    for (field, value) in message.fields() {
        let path = if prefix.is_empty() {
            field.name().to_owned()
        } else {
            format!("{prefix}.{}", field.name())
        };
        check_value(value, &path, violations);
    }
}

fn check_value(value: &Value, path: &str, violations: &mut FieldViolations) {
    match value {
        Value::String(text) => check_string(text, path, violations),
        Value::Message(message) => walk(message, path, violations),
        Value::List(items) => {
            for (index, item) in items.iter().enumerate() {
                check_value(item, &format!("{path}[{index}]"), violations);
            }
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                if let MapKey::String(key) = key {
                    check_string(key, &format!("{path}[key]"), violations);
                    check_value(item, &format!("{path}[{key:?}]"), violations);
                } else {
                    check_value(item, path, violations);
                }
            }
        }
        _ => {}
    }
}

fn check_string(text: &str, path: &str, violations: &mut FieldViolations) {
    if text.len() > MAX_STRING_BYTES {
        violations.add(
            path,
            format!("must be at most {MAX_STRING_BYTES} bytes long"),
        );
    } else if text.contains('\0') {
        violations.add(path, "must not contain the NUL character (U+0000)");
    }
}

/// Checks one gRPC request body (the length-prefixed message) against `input`.
/// `Ok(())` also for a compressed message, which the service's codec handles.
pub fn check_body(input: &MessageDescriptor, body: &[u8]) -> Result<(), tonic::Status> {
    let Some((&compressed, rest)) = body.split_first() else {
        return Ok(());
    };
    if compressed != 0 || rest.len() < 4 {
        return Ok(());
    }
    let (length, message) = rest.split_at(4);
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    let Some(message) = message.get(..length) else {
        return Ok(()); // A short frame: tonic refuses it as such.
    };
    match DynamicMessage::decode(input.clone(), message) {
        Ok(decoded) => violations(&decoded).check().map_err(|error| {
            tracing::debug!(message = input.full_name(), %error, "request refused");
            error.into_status(DOMAIN)
        }),
        Err(error) => Err(FieldViolations::single(
            "(request)",
            format!("is not a valid {} message: {error}", input.full_name()),
        )
        .into_status(DOMAIN)),
    }
}

/// The tower layer that checks every request's message before the service sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestCheckLayer;

impl<S> tower::Layer<S> for RequestCheckLayer {
    type Service = RequestCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestCheck { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestCheck<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for RequestCheck<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // Take the service that was polled ready and leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(input) = input_of(request.uri().path()) else {
            return Box::pin(inner.call(request));
        };
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes: Bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let status = if error.is::<http_body_util::LengthLimitError>() {
                        tonic::Status::new(Code::ResourceExhausted, "the request is too large")
                    } else {
                        tonic::Status::new(Code::Cancelled, "the request was not received")
                    };
                    return Ok(status.into_http());
                }
            };
            if let Err(status) = check_body(&input, bytes.chunk()) {
                return Ok(status.into_http());
            }
            let request = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
            inner.call(request).await
        })
    }
}

/// Every method this layer checks, with its input message: for tests that walk the API.
pub fn checked_methods() -> Vec<(String, MessageDescriptor)> {
    POOL.as_ref()
        .map(|pool| {
            pool.services()
                .flat_map(|service| {
                    service
                        .methods()
                        .filter(|m| !m.is_client_streaming())
                        .map(|m| (format!("/{}/{}", service.full_name(), m.name()), m.input()))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(message);
        body
    }

    fn fields(status: &tonic::Status) -> Vec<String> {
        use tonic_types::StatusExt;
        status
            .get_error_details()
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn every_latchkey_method_is_checked() {
        let methods = checked_methods();
        for path in [
            "/latchkey.access.v1.AccessService/CheckAccess",
            "/latchkey.access.v1.DirectoryService/ListProperties",
            "/latchkey.gateway.v1.LockGateway/CreatePasscode",
        ] {
            assert!(methods.iter().any(|(p, _)| p == path), "{path} not checked");
        }
        assert!(input_of("/grpc.health.v1.Health/Check").is_none());
    }

    #[test]
    fn a_nul_anywhere_is_refused_with_its_field() {
        let input = input_of("/latchkey.access.v1.AccessService/CheckAccess").unwrap();
        let request = crate::pb::access::v1::CheckAccessRequest {
            door_id: "d".to_owned(),
            user_id: "al\0ice".to_owned(),
            ..Default::default()
        };
        let status = check_body(&input, &frame(&request.encode_to_vec())).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(fields(&status), ["user_id"]);

        let input = input_of("/latchkey.access.v1.RuleService/CreateRule").unwrap();
        let request = crate::pb::access::v1::CreateRuleRequest {
            rule: Some(crate::pb::access::v1::Rule {
                name: "night\0".to_owned(),
                user_ids: vec!["a".to_owned(), "b\0".to_owned()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let status = check_body(&input, &frame(&request.encode_to_vec())).unwrap_err();
        assert_eq!(fields(&status), ["rule.name", "rule.user_ids[1]"]);
    }

    #[test]
    fn undecodable_bodies_and_huge_strings_are_invalid_arguments() {
        let input = input_of("/latchkey.access.v1.AccessService/CheckAccess").unwrap();
        // Field 1 (door_id) as a string whose bytes are not UTF-8.
        let status = check_body(&input, &frame(&[0x0a, 0x02, 0xc3, 0x28])).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        // A length running past the end of the message.
        let status = check_body(&input, &frame(&[0x0a, 0x09, b'a'])).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);

        let request = crate::pb::access::v1::CheckAccessRequest {
            client_ip: "1".repeat(MAX_STRING_BYTES + 1),
            ..Default::default()
        };
        let status = check_body(&input, &frame(&request.encode_to_vec())).unwrap_err();
        assert_eq!(fields(&status), ["client_ip"]);

        let fine = crate::pb::access::v1::CheckAccessRequest {
            user_id: "Zoë 山田 🚪".to_owned(),
            ..Default::default()
        };
        assert!(check_body(&input, &frame(&fine.encode_to_vec())).is_ok());
    }
}
