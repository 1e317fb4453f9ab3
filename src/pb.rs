//! Code generated from `proto/` by `build.rs`.

#[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod access {
    pub mod v1 {
        tonic::include_proto!("latchkey.access.v1");
    }
}

#[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("latchkey.gateway.v1");
    }
}

/// Every latchkey protobuf file, encoded, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("latchkey_descriptor");

/// A protobuf timestamp for an instant.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The instant a protobuf timestamp names, or `None` when it is out of range.
pub fn from_timestamp(ts: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    chrono::DateTime::from_timestamp(ts.seconds, nanos)
}
