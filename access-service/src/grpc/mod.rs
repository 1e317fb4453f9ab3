//! The gRPC surface: thin methods that unpack requests, call domain code and convert.

pub mod access;
pub mod audit;
pub mod codes;
pub mod convert;
pub mod directory;
pub mod events;
pub mod rules;

pub use crate::policy::policy;

/// A request, its request id, and the request as encoded without the id: what
/// [`crate::request_ids::once`] compares a repeat with.
fn identified<M: prost::Message>(
    request: tonic::Request<M>,
    id: impl FnOnce(&mut M) -> &mut String,
) -> (M, String, Vec<u8>) {
    let mut message = request.into_inner();
    let request_id = std::mem::take(id(&mut message));
    let body = message.encode_to_vec();
    (message, request_id, body)
}
