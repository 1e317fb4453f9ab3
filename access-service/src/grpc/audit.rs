//! `latchkey.access.v1.AuditService`.

use std::pin::Pin;

use latchkey::auth::Caller;
use latchkey::error::FieldViolations;
use latchkey::pb::access::v1 as pb;
use latchkey::pb::access::v1::audit_service_server::AuditService;
use latchkey::pb::{from_timestamp, timestamp};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert;
use crate::audit::read::Stats;
use crate::audit_ops::{self as ops, RawFilter};
use crate::error::Error;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct AuditApi {
    state: AppState,
}

impl AuditApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Reads an optional timestamp field, recording a violation when it is out of range.
fn instant(
    field: &str,
    value: Option<&prost_types::Timestamp>,
    violations: &mut FieldViolations,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let value = value?;
    let parsed = from_timestamp(value);
    if parsed.is_none() {
        violations.add(field, "is not a valid timestamp");
    }
    parsed
}

fn raw_filter(filter: Option<pb::LogFilter>, violations: &mut FieldViolations) -> RawFilter {
    let filter = filter.unwrap_or_default();
    let action = match pb::AuditAction::try_from(filter.action) {
        Ok(pb::AuditAction::Unspecified) => None,
        Ok(action) => convert::audit_action_from_pb(action),
        Err(_) => {
            violations.add("filter.action", "is not a known action");
            None
        }
    };
    let method = match pb::AccessMethod::try_from(filter.method) {
        Ok(pb::AccessMethod::Unspecified) => None,
        Ok(method) => Some(convert::method_name(method).to_owned()),
        Err(_) => {
            violations.add("filter.method", "is not a known method");
            None
        }
    };
    RawFilter {
        start: instant("filter.start_time", filter.start_time.as_ref(), violations),
        end: instant("filter.end_time", filter.end_time.as_ref(), violations),
        door_id: filter.door_id,
        user_id: filter.user_id,
        success: filter.success,
        action,
        method,
        flagged: filter.flagged,
    }
}

fn stats_message(stats: Stats) -> pb::AccessStats {
    let failures = stats.total - stats.successes;
    let rate = |n: i64| {
        if stats.total == 0 {
            0.0
        } else {
            n as f64 / stats.total as f64
        }
    };
    let pairs = |rows: Vec<(String, i64)>| {
        rows.into_iter()
            .map(|(key, count)| pb::CountByKey { key, count })
            .collect()
    };
    pb::AccessStats {
        total: stats.total,
        successes: stats.successes,
        failures,
        success_rate: rate(stats.successes),
        failure_rate: rate(failures),
        by_action: pairs(stats.by_action),
        by_method: pairs(stats.by_method),
        top_doors: pairs(stats.top_doors),
        unique_users: stats.unique_users,
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn query_access_logs(
        &self,
        request: Request<pb::QueryAccessLogsRequest>,
    ) -> Reply<pb::QueryAccessLogsResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let filter = raw_filter(request.filter, &mut violations);
        violations.check().map_err(Error::from)?;
        let (rows, next_page_token) = ops::query(
            &self.state,
            &caller,
            filter,
            request.page_size,
            &request.page_token,
        )
        .await?;
        Ok(Response::new(pb::QueryAccessLogsResponse {
            logs: rows.into_iter().map(convert::access_log).collect(),
            next_page_token,
        }))
    }

    async fn get_access_log(
        &self,
        request: Request<pb::GetAccessLogRequest>,
    ) -> Reply<pb::AccessLog> {
        let caller = Caller::of(&request)?;
        let record = ops::get(&self.state, &caller, request.get_ref().sequence).await?;
        Ok(Response::new(convert::access_log(record)))
    }

    type ExportAccessLogsStream =
        Pin<Box<dyn Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

    async fn export_access_logs(
        &self,
        request: Request<pb::ExportAccessLogsRequest>,
    ) -> Reply<Self::ExportAccessLogsStream> {
        let caller = Caller::of(&request)?;
        let mut violations = FieldViolations::default();
        let filter = raw_filter(request.into_inner().filter, &mut violations);
        violations.check().map_err(Error::from)?;
        let chunks = ops::export(&self.state, &caller, filter).await?;
        let stream = tokio_stream::StreamExt::map(ReceiverStream::new(chunks), |chunk| {
            chunk
                .map(|data| pb::ExportChunk { data })
                .map_err(|error| Status::from(Error::from(error)))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Reply<pb::VerifyAuditChainResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let outcome = ops::verify(
            &self.state,
            &caller,
            request.from_sequence,
            request.to_sequence,
        )
        .await?;
        Ok(Response::new(pb::VerifyAuditChainResponse {
            valid: outcome.first_broken.is_none(),
            rows_checked: outcome.rows_checked,
            first_broken_sequence: outcome.first_broken.unwrap_or(0),
            detail: outcome.detail,
            last_sequence: outcome.last_sequence,
        }))
    }

    async fn get_access_stats(
        &self,
        request: Request<pb::GetAccessStatsRequest>,
    ) -> Reply<pb::AccessStats> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let start = instant("start_time", request.start_time.as_ref(), &mut violations);
        let end = instant("end_time", request.end_time.as_ref(), &mut violations);
        violations.check().map_err(Error::from)?;
        let stats = ops::stats(&self.state, &caller, start, end, None).await?;
        Ok(Response::new(stats_message(stats)))
    }

    async fn get_door_stats(
        &self,
        request: Request<pb::GetDoorStatsRequest>,
    ) -> Reply<pb::AccessStats> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let start = instant("start_time", request.start_time.as_ref(), &mut violations);
        let end = instant("end_time", request.end_time.as_ref(), &mut violations);
        violations.check().map_err(Error::from)?;
        let stats = ops::stats(&self.state, &caller, start, end, Some(&request.door_id)).await?;
        Ok(Response::new(stats_message(stats)))
    }

    async fn find_suspicious_activity(
        &self,
        request: Request<pb::FindSuspiciousActivityRequest>,
    ) -> Reply<pb::FindSuspiciousActivityResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let start = instant("start_time", request.start_time.as_ref(), &mut violations);
        let end = instant("end_time", request.end_time.as_ref(), &mut violations);
        violations.check().map_err(Error::from)?;
        let bursts = ops::suspicious(
            &self.state,
            &caller,
            request.window_minutes,
            request.threshold,
            start,
            end,
        )
        .await?;
        Ok(Response::new(pb::FindSuspiciousActivityResponse {
            actors: bursts
                .into_iter()
                .map(|b| pb::SuspiciousActor {
                    kind: b.kind,
                    value: b.value,
                    failed_attempts: b.failed_attempts,
                    first_time: Some(timestamp(b.first_time)),
                    last_time: Some(timestamp(b.last_time)),
                    door_ids: b.door_ids,
                })
                .collect(),
        }))
    }

    async fn purge_access_logs(
        &self,
        request: Request<pb::PurgeAccessLogsRequest>,
    ) -> Reply<pb::PurgeAccessLogsResponse> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::default();
        let before = instant("before", request.before.as_ref(), &mut violations);
        violations.check().map_err(Error::from)?;
        let outcome = ops::purge_request(&self.state, &caller, before).await?;
        Ok(Response::new(pb::PurgeAccessLogsResponse {
            purged: outcome.purged,
            checkpoint_sequence: outcome.checkpoint_sequence,
            checkpoint_hash: hex::encode(outcome.checkpoint_hash),
        }))
    }
}
