//! The audit log's operations as the API offers them: validated filters, pages, CSV
//! export, verification, statistics, failure bursts, purge and the retention job.

use chrono::{DateTime, Duration, Utc};
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pagination;
use tokio::sync::mpsc;

use crate::audit::read::{self, Filter, Stats, Verification};
use crate::audit::store::Record;
use crate::audit::writer::AuditWriter;
use crate::audit::{AuditAction, AuditEntry};
use crate::error::Result;
use crate::state::AppState;

/// Rows per export batch: memory stays bounded whatever the export's size.
const EXPORT_BATCH: i64 = 2000;
/// Bytes per streamed chunk.
const EXPORT_CHUNK: usize = 256 * 1024;

/// The header of exported CSV, in column order.
pub const CSV_HEADER: [&str; 27] = [
    "sequence",
    "time",
    "actor",
    "action",
    "door_id",
    "door_name",
    "door_type",
    "door_location",
    "user_id",
    "user_name",
    "user_email",
    "user_role",
    "method",
    "success",
    "reason_code",
    "reason",
    "rule_id",
    "rule_version",
    "client_ip",
    "request_id",
    "target_type",
    "target_id",
    "metadata",
    "flagged",
    "prev_hash",
    "hash",
    "tenant_id",
];

fn chunk_writer() -> csv::Writer<Vec<u8>> {
    csv::Writer::from_writer(Vec::with_capacity(EXPORT_CHUNK + 4096))
}

fn csv_record(record: &Record) -> [String; 27] {
    [
        record.sequence.to_string(),
        record
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        record.actor.clone(),
        record.action.clone(),
        record.door_id.clone(),
        record.door_name.clone(),
        record.door_type.clone(),
        record.door_location.clone(),
        record.user_id.clone(),
        record.user_name.clone(),
        record.user_email.clone(),
        record.user_role.clone(),
        record.method.clone(),
        record.success.to_string(),
        record.reason_code.clone(),
        record.reason.clone(),
        record.rule_id.clone(),
        record.rule_version.to_string(),
        record.client_ip.clone(),
        record.request_id.clone(),
        record.target_type.clone(),
        record.target_id.clone(),
        record.metadata.clone(),
        record.flagged.to_string(),
        hex::encode(&record.prev_hash),
        hex::encode(&record.hash),
        record.tenant_id.clone(),
    ]
}

/// A filter as the API receives it, before validation.
#[derive(Debug, Default)]
pub struct RawFilter {
    pub door_id: String,
    pub user_id: String,
    pub success: String,
    pub action: Option<AuditAction>,
    pub method: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub flagged: String,
}

/// Parses "true"/"false"/"" as a tri-state filter.
pub fn tri_state(field: &str, value: &str, violations: &mut FieldViolations) -> Option<bool> {
    match value {
        "" => None,
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            violations.add(field, "must be \"true\", \"false\" or empty");
            None
        }
    }
}

pub fn check_filter(raw: RawFilter, violations: &mut FieldViolations) -> Filter {
    if let (Some(start), Some(end)) = (raw.start, raw.end)
        && end <= start
    {
        violations.add("filter.end_time", "must be after filter.start_time");
    }
    for (field, value) in [
        ("filter.door_id", &raw.door_id),
        ("filter.user_id", &raw.user_id),
    ] {
        if value.len() > 128 {
            violations.add(field, "must be at most 128 characters");
        }
    }
    Filter {
        success: tri_state("filter.success", &raw.success, violations),
        flagged: tri_state("filter.flagged", &raw.flagged, violations),
        door_id: (!raw.door_id.is_empty()).then_some(raw.door_id),
        user_id: (!raw.user_id.is_empty()).then_some(raw.user_id),
        action: raw.action.map(|a| a.as_str().to_owned()),
        method: raw.method,
        start: raw.start,
        end: raw.end,
    }
}

fn decode_sequence_token(token: &str, violations: &mut FieldViolations) -> Option<i64> {
    if token.is_empty() {
        return None;
    }
    match token
        .strip_prefix("s1.")
        .and_then(|s| s.parse::<i64>().ok())
    {
        Some(sequence) if sequence > 0 => Some(sequence),
        _ => {
            violations.add("page_token", "is not a token this service issued");
            None
        }
    }
}

/// One page, newest first, and the next page's token.
pub async fn query(
    state: &AppState,
    caller: &Caller,
    raw: RawFilter,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<Record>, String)> {
    let mut violations = FieldViolations::default();
    let filter = check_filter(raw, &mut violations);
    let size = pagination::page_size(page_size, &mut violations);
    let before = decode_sequence_token(page_token, &mut violations);
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let mut rows = read::page(&mut conn, &caller.tenant_id, &filter, before, size).await?;
    let more = rows.len() > usize::try_from(size).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let token = match rows.last() {
        Some(last) if more => format!("s1.{}", last.sequence),
        _ => String::new(),
    };
    Ok((rows, token))
}

pub async fn get(state: &AppState, caller: &Caller, sequence: i64) -> Result<Record> {
    if sequence <= 0 {
        return Err(FieldViolations::single("sequence", "must be positive").into());
    }
    let mut conn = state.pool.get().await?;
    read::get(&mut conn, &caller.tenant_id, sequence)
        .await?
        .ok_or_else(|| ApiError::not_found("audit log row", sequence.to_string()).into())
}

/// Validates an export and returns the receiver of its CSV chunks. Rows are read in
/// batches and written as they come, so memory stays bounded; the bounded channel holds
/// the producer back while the client is slow.
pub async fn export(
    state: &AppState,
    caller: &Caller,
    raw: RawFilter,
) -> Result<mpsc::Receiver<std::result::Result<Vec<u8>, ApiError>>> {
    let mut violations = FieldViolations::default();
    let filter = check_filter(raw, &mut violations);
    violations.check()?;
    let (sender, receiver) = mpsc::channel(4);
    let pool = state.pool.clone();
    let tenant = caller.tenant_id.clone();
    latchkey::telemetry::spawn_in_span(async move {
        let produced = async {
            let mut writer = chunk_writer();
            writer
                .write_record(CSV_HEADER)
                .map_err(ApiError::internal)?;
            let mut after = 0;
            loop {
                let rows = {
                    let mut conn = pool.get().await?;
                    read::batch_after(&mut conn, &tenant, &filter, after, EXPORT_BATCH).await?
                };
                let done = rows.len() < usize::try_from(EXPORT_BATCH).unwrap_or(0);
                for record in &rows {
                    after = record.sequence;
                    writer
                        .write_record(csv_record(record))
                        .map_err(ApiError::internal)?;
                    if writer.get_ref().len() >= EXPORT_CHUNK {
                        let full = std::mem::replace(&mut writer, chunk_writer());
                        let chunk = full.into_inner().map_err(ApiError::internal)?;
                        if sender.send(Ok(chunk)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                if done {
                    break;
                }
            }
            writer.flush().map_err(ApiError::internal)?;
            let rest = writer.into_inner().map_err(ApiError::internal)?;
            if !rest.is_empty() {
                let _ = sender.send(Ok(rest)).await;
            }
            Ok::<_, ApiError>(())
        }
        .await;
        if let Err(error) = produced {
            let _ = sender.send(Err(error)).await;
        }
    });
    Ok(receiver)
}

pub async fn verify(state: &AppState, caller: &Caller, from: i64, to: i64) -> Result<Verification> {
    let mut violations = FieldViolations::default();
    if from < 0 {
        violations.add("from_sequence", "must not be negative");
    }
    if to < 0 {
        violations.add("to_sequence", "must not be negative");
    }
    if to > 0 && from > to {
        violations.add("to_sequence", "must not be before from_sequence");
    }
    violations.check()?;
    let mut conn = state.pool.get().await?;
    Ok(read::verify(&mut conn, &caller.tenant_id, from, to).await?)
}

pub async fn stats(
    state: &AppState,
    caller: &Caller,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    door: Option<&str>,
) -> Result<Stats> {
    let mut violations = FieldViolations::default();
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        violations.add("end_time", "must be after start_time");
    }
    if door.is_some_and(|d| d.is_empty() || d.len() > 128) {
        violations.add("door_id", "is required, at most 128 characters");
    }
    violations.check()?;
    let mut conn = state.pool.get().await?;
    Ok(read::stats(&mut conn, &caller.tenant_id, start, end, door).await?)
}

pub async fn suspicious(
    state: &AppState,
    caller: &Caller,
    window_minutes: i32,
    threshold: i32,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Result<Vec<read::Burst>> {
    let mut violations = FieldViolations::default();
    if !(1..=10_080).contains(&window_minutes) {
        violations.add("window_minutes", "must be between 1 and 10080 (a week)");
    }
    if !(2..=100_000).contains(&threshold) {
        violations.add("threshold", "must be between 2 and 100000");
    }
    let end = end.unwrap_or_else(Utc::now);
    let start = start.unwrap_or(end - Duration::hours(24));
    if end <= start {
        violations.add("end_time", "must be after start_time");
    }
    violations.check()?;
    let mut conn = state.pool.get().await?;
    Ok(read::bursts(
        &mut conn,
        &caller.tenant_id,
        window_minutes,
        threshold,
        start,
        end,
    )
    .await?)
}

/// What a purge removed and where the chain now starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub purged: i64,
    pub checkpoint_sequence: i64,
    pub checkpoint_hash: Vec<u8>,
}

/// Purges the tenant's rows before `before` and records the purge in the log itself.
pub async fn purge(
    pool: &latchkey::db::DbPool,
    writer: &AuditWriter,
    tenant: &str,
    actor: &str,
    before: DateTime<Utc>,
) -> Result<PurgeOutcome> {
    let mut conn = pool.get().await?;
    let purged = read::purge(&mut conn, tenant, before).await?;
    drop(conn);
    if purged.purged > 0 {
        let mut entry = AuditEntry::new(tenant, actor, AuditAction::LogsPurged, true);
        entry.metadata = serde_json::json!({
            "before": before.to_rfc3339(),
            "purged_rows": purged.purged,
            "checkpoint_sequence": purged.checkpoint_sequence,
            "checkpoint_hash": hex::encode(&purged.checkpoint_hash),
        })
        .to_string();
        writer.append(entry).await?;
    }
    Ok(PurgeOutcome {
        purged: purged.purged,
        checkpoint_sequence: purged.checkpoint_sequence,
        checkpoint_hash: purged.checkpoint_hash,
    })
}

pub async fn purge_request(
    state: &AppState,
    caller: &Caller,
    before: Option<DateTime<Utc>>,
) -> Result<PurgeOutcome> {
    let Some(before) = before else {
        return Err(FieldViolations::single("before", "is required").into());
    };
    if before > Utc::now() {
        return Err(FieldViolations::single("before", "must not be in the future").into());
    }
    purge(
        &state.pool,
        &state.audit,
        &caller.tenant_id,
        &caller.user_id,
        before,
    )
    .await
}

/// Purges every tenant's rows older than `retention`, every `interval`, until aborted.
/// Replicas may all run it: the purge function serialises on each chain's head.
pub async fn retention_job(
    pool: latchkey::db::DbPool,
    writer: AuditWriter,
    retention: Duration,
    interval: std::time::Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let tenants = match pool.get().await {
            Ok(mut conn) => read::tenants(&mut conn).await.unwrap_or_default(),
            Err(_) => continue,
        };
        let before = Utc::now() - retention;
        for tenant in tenants {
            match purge(&pool, &writer, &tenant, "retention", before).await {
                Ok(outcome) if outcome.purged > 0 => {
                    tracing::info!(tenant = %tenant, purged = outcome.purged, "audit retention purge");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(tenant = %tenant, ?error, "audit retention purge failed")
                }
            }
        }
    }
}
