//! The lock cache: syncs from TTLock's lock list, lock details and gateway list (none of
//! which wakes a lock through its gateway), the differences a sync finds as device
//! events, the records read since the last sync, and the derived lock status.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use latchkey::auth::Caller;
use latchkey::error::{ApiError, FieldViolations};
use latchkey::pb::gateway::v1 as pb;
use latchkey::pb::timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::db::locks::{self, LockRow};
use crate::db::{accounts, events, inbox};
use crate::error::Result;
use crate::events::effects::{apply_online, apply_record, battery_fell};
use crate::events::{Event, Kind, MaskedRecord, Source};
use crate::state::AppState;
use crate::ttlock::TtlockClient;
use crate::ttlock::types::{LockDetail, LockSummary};
use diesel_async::AsyncConnection;

/// Records are re-read this far behind the newest one seen: lock clocks count whole
/// seconds and upload late. Duplicates are dropped by their digest.
const RECORD_OVERLAP_MS: i64 = 10 * 60 * 1000;
/// How far back the first read of a lock's records goes.
const FIRST_RECORDS_MS: i64 = 60 * 60 * 1000;

/// The status a cached lock is in now.
pub fn status(row: &LockRow, low_battery_percent: i32, now: DateTime<Utc>) -> pb::LockStatus {
    if row.remote_capable && !row.online {
        return pb::LockStatus::Offline;
    }
    if (0..=low_battery_percent).contains(&row.battery_percent) {
        return pb::LockStatus::LowBattery;
    }
    match row.bolt.as_str() {
        "LOCKED" => pb::LockStatus::Locked,
        // Auto-lock is rarely reported (reference §10.7): past its delay the bolt is thrown.
        "UNLOCKED" => match row.bolt_time {
            Some(at)
                if row.auto_lock_secs > 0
                    && at + chrono::Duration::seconds(i64::from(row.auto_lock_secs)) <= now =>
            {
                pb::LockStatus::Locked
            }
            _ => pb::LockStatus::Unlocked,
        },
        _ => pb::LockStatus::Unknown,
    }
}

pub fn message(row: &LockRow, low_battery_percent: i32, now: DateTime<Utc>) -> pb::Lock {
    pb::Lock {
        account_id: row.account_id.to_string(),
        lock_id: row.lock_id,
        alias: row.alias.clone(),
        name: row.name.clone(),
        mac: row.mac.clone(),
        battery_percent: row.battery_percent,
        battery_time: row.battery_time.map(timestamp),
        has_gateway: row.has_gateway,
        online: row.online,
        status: status(row, low_battery_percent, now) as i32,
        model: row.model.clone(),
        hardware: row.hardware.clone(),
        firmware: row.firmware.clone(),
        timezone_offset_ms: row.timezone_offset_ms,
        remote_capable: row.remote_capable,
        last_sync_time: Some(timestamp(row.last_sync_time)),
        gateway_ids: row.gateway_ids.clone(),
    }
}

/// The fields a sync compares; a difference in any makes the lock "changed".
fn observed(row: &LockRow) -> impl PartialEq + '_ {
    (
        (&row.alias, &row.name, &row.mac, row.battery_percent),
        (
            row.has_gateway,
            row.online,
            row.remote_capable,
            &row.gateway_ids,
        ),
        (&row.model, &row.hardware, &row.firmware),
        (row.timezone_offset_ms, row.auto_lock_secs),
    )
}

/// What TTLock says of one account's locks.
struct Reading {
    locks: Vec<(LockSummary, Option<LockDetail>)>,
    /// Lock id → the account's gateways that reach it.
    gateways_of: HashMap<i64, Vec<i64>>,
    online_gateways: HashSet<i64>,
}

async fn read(client: &TtlockClient) -> std::result::Result<Reading, crate::ttlock::Error> {
    let summaries = client.locks().await?;
    let gateways = client.gateways().await?;
    let mut gateways_of: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut online_gateways = HashSet::new();
    for gateway in &gateways {
        if gateway.is_online == Some(true) {
            online_gateways.insert(gateway.gateway_id);
        }
        for lock in client.gateway_locks(gateway.gateway_id).await? {
            gateways_of
                .entry(lock.lock_id)
                .or_default()
                .push(gateway.gateway_id);
        }
    }
    let mut locks = Vec::with_capacity(summaries.len());
    for summary in summaries {
        // Details add model and firmware; a lock deleted meanwhile just lacks them.
        let detail = client.lock_detail(summary.lock_id).await.ok();
        locks.push((summary, detail));
    }
    Ok(Reading {
        locks,
        gateways_of,
        online_gateways,
    })
}

fn row_of(
    tenant_id: &str,
    account: Uuid,
    summary: &LockSummary,
    detail: Option<&LockDetail>,
    reading: &Reading,
    previous: Option<&LockRow>,
    now: DateTime<Utc>,
) -> LockRow {
    let text = |a: Option<&String>, b: Option<&String>| a.or(b).cloned().unwrap_or_default();
    let mut gateway_ids = reading
        .gateways_of
        .get(&summary.lock_id)
        .cloned()
        .unwrap_or_default();
    gateway_ids.sort_unstable();
    let has_gateway = summary.has_gateway == Some(true) || !gateway_ids.is_empty();
    // TTLock's own flag and WiFi bit, or a gateway of the account that reaches it.
    let remote_capable = has_gateway || summary.is_remote_capable();
    // A gateway the account does not own may reach the lock: then TTLock's flag is all
    // there is to go by.
    let online = if gateway_ids.is_empty() {
        remote_capable
    } else {
        gateway_ids
            .iter()
            .any(|g| reading.online_gateways.contains(g))
    };
    let battery = summary
        .electric_quantity
        .or(detail.and_then(|d| d.electric_quantity))
        .filter(|b| (0..=100).contains(b))
        .unwrap_or(-1);
    let battery_time = summary
        .electric_quantity_update_date
        .and_then(DateTime::from_timestamp_millis)
        .or(previous.and_then(|p| p.battery_time))
        .or(Some(now).filter(|_| battery >= 0));
    LockRow {
        tenant_id: tenant_id.to_owned(),
        account_id: account,
        lock_id: summary.lock_id,
        alias: text(
            summary.lock_alias.as_ref(),
            detail.and_then(|d| d.lock_alias.as_ref()),
        ),
        name: text(
            summary.lock_name.as_ref(),
            detail.and_then(|d| d.lock_name.as_ref()),
        ),
        mac: text(
            summary.lock_mac.as_ref(),
            detail.and_then(|d| d.lock_mac.as_ref()),
        ),
        battery_percent: battery,
        battery_time,
        has_gateway,
        online,
        remote_capable,
        gateway_ids,
        model: text(detail.and_then(|d| d.model_num.as_ref()), None),
        hardware: text(detail.and_then(|d| d.hardware_revision.as_ref()), None),
        firmware: text(detail.and_then(|d| d.firmware_revision.as_ref()), None),
        timezone_offset_ms: summary
            .timezone_raw_offset
            .or(detail.and_then(|d| d.timezone_raw_offset))
            .unwrap_or(0),
        auto_lock_secs: detail
            .and_then(|d| d.auto_lock_time)
            .filter(|s| *s > 0)
            .unwrap_or(0),
        bolt: previous.map_or_else(|| "UNKNOWN".to_owned(), |p| p.bolt.clone()),
        bolt_time: previous.and_then(|p| p.bolt_time),
        records_until_ms: previous.and_then(|p| p.records_until_ms),
        last_sync_time: now,
    }
}

/// What one account's sync found.
#[derive(Debug, Default)]
pub struct Report {
    pub added: Vec<LockRow>,
    pub removed: Vec<LockRow>,
    pub changed: Vec<LockRow>,
    pub unchanged: usize,
}

/// Syncs one account: reads TTLock, then rewrites the cache and appends the differences
/// as events in one transaction, then reads each reachable lock's new records.
pub async fn sync_account(state: &AppState, tenant_id: &str, account: Uuid) -> Result<Report> {
    let client = state
        .accounts
        .client(&state.pool, tenant_id, account)
        .await?;
    let reading = read(&client).await.map_err(|error| {
        tracing::warn!(%account, code = ?error.code(), %error, "lock sync could not read TTLock");
        ApiError::Unavailable {
            reason: "TTLOCK_UNAVAILABLE",
            message: format!("TTLock could not be read: {error}"),
        }
    })?;
    let threshold = state.low_battery_percent;
    let now = Utc::now();
    let mut conn = state.pool.get().await?;
    let report = conn
        .transaction(async |conn| {
            let cached = locks::of_account_for_update(conn, tenant_id, account).await?;
            let mut previous: HashMap<i64, LockRow> =
                cached.into_iter().map(|r| (r.lock_id, r)).collect();
            let mut report = Report::default();
            let mut out: Vec<Event> = Vec::new();
            for (summary, detail) in &reading.locks {
                let before = previous.remove(&summary.lock_id);
                let row = row_of(
                    tenant_id,
                    account,
                    summary,
                    detail.as_ref(),
                    &reading,
                    before.as_ref(),
                    now,
                );
                let battery_before = before.as_ref().map_or(-1, |b| b.battery_percent);
                if battery_fell(battery_before, row.battery_percent, threshold) {
                    let mut event =
                        Event::new(account, row.lock_id, Kind::LowBattery, Source::Sync);
                    event.battery_percent = row.battery_percent;
                    event.detail = format!(
                        "battery at {}%, threshold {threshold}%",
                        row.battery_percent
                    );
                    out.push(event);
                }
                match before {
                    None => {
                        out.push(Event::new(
                            account,
                            row.lock_id,
                            Kind::LockAdded,
                            Source::Sync,
                        ));
                        report.added.push(row.clone());
                    }
                    Some(mut before) => {
                        if observed(&before) == observed(&row) {
                            report.unchanged += 1;
                        } else {
                            report.changed.push(row.clone());
                        }
                        out.extend(apply_online(&mut before, row.online, Source::Sync, 0, now));
                    }
                }
                locks::upsert(conn, &row).await?;
            }
            for gone in previous.into_values() {
                locks::delete(conn, tenant_id, account, gone.lock_id).await?;
                out.push(Event::new(
                    account,
                    gone.lock_id,
                    Kind::LockRemoved,
                    Source::Sync,
                ));
                report.removed.push(gone);
            }
            events::append(conn, tenant_id, out.into_iter().map(Event::row).collect()).await?;
            let added: Vec<i64> = report.added.iter().map(|r| r.lock_id).collect();
            if inbox::requeue_unrouted(conn, &added).await? > 0 {
                state.inbox_wake.notify_one();
            }
            Ok::<_, diesel::result::Error>(report)
        })
        .await?;
    drop(conn);
    let reachable: Vec<i64> = reading
        .locks
        .iter()
        .filter(|(s, _)| s.is_remote_capable() || reading.gateways_of.contains_key(&s.lock_id))
        .map(|(s, _)| s.lock_id)
        .collect();
    for lock_id in reachable {
        if let Err(error) = read_records(state, &client, tenant_id, account, lock_id).await {
            tracing::warn!(
                lock_id,
                ?error,
                "lock records not read; the next sync tries again"
            );
        }
    }
    Ok(report)
}

/// Appends the lock's records since the last read as events (de-duplicated against the
/// callbacks that already brought them) and moves the watermark.
async fn read_records(
    state: &AppState,
    client: &TtlockClient,
    tenant_id: &str,
    account: Uuid,
    lock_id: i64,
) -> Result<()> {
    let since = {
        let mut conn = state.pool.get().await?;
        let Some(row) = locks::get(&mut conn, tenant_id, account, lock_id).await? else {
            return Ok(());
        };
        row.records_until_ms.map_or_else(
            || Utc::now().timestamp_millis() - FIRST_RECORDS_MS,
            |until| until - RECORD_OVERLAP_MS,
        )
    };
    let records = client
        .records_since(lock_id, since.max(0))
        .await
        .map_err(|error| ApiError::Unavailable {
            reason: "TTLOCK_UNAVAILABLE",
            message: format!("lock records could not be read: {error}"),
        })?;
    let mut masked = MaskedRecord::listed(state.accounts.sealer(), lock_id, &records);
    // Oldest first, so bolt and battery end as the newest record left them.
    masked.sort_by_key(|r| (r.lock_date.unwrap_or(0), r.record_id.unwrap_or(0)));
    let newest = masked.iter().filter_map(|r| r.lock_date).max();
    let mut conn = state.pool.get().await?;
    conn.transaction(async |conn| {
        let Some(mut row) = locks::by_lock_id_for_update(conn, lock_id)
            .await?
            .into_iter()
            .find(|r| r.tenant_id == tenant_id && r.account_id == account)
        else {
            return Ok(());
        };
        let mut out = Vec::new();
        for record in &masked {
            out.push(record.event(account, Source::Records));
            out.extend(apply_record(
                &mut row,
                record,
                Source::Records,
                state.low_battery_percent,
                state.accounts.sealer(),
            ));
        }
        row.records_until_ms = newest.max(row.records_until_ms).or(Some(
            Utc::now().timestamp_millis() - FIRST_RECORDS_MS + RECORD_OVERLAP_MS,
        ));
        locks::upsert(conn, &row).await?;
        events::append(conn, tenant_id, out.into_iter().map(Event::row).collect()).await?;
        Ok::<_, diesel::result::Error>(())
    })
    .await?;
    Ok(())
}

fn account_of(id: &str, field: &str, violations: &mut FieldViolations) -> Option<Uuid> {
    if id.is_empty() {
        return None;
    }
    let parsed = Uuid::try_parse(id).ok();
    if parsed.is_none() {
        violations.add(field, "must be an account id (UUID)");
    }
    parsed
}

/// `SyncLocks`: one account, or every account of the tenant.
pub async fn sync(
    state: &AppState,
    caller: &Caller,
    account_id: &str,
) -> Result<pb::SyncLocksResponse> {
    let mut violations = FieldViolations::default();
    let account = account_of(account_id, "account_id", &mut violations);
    violations.check()?;
    let accounts = match account {
        Some(account) => vec![account],
        None => {
            let mut conn = state.pool.get().await?;
            accounts::list(&mut conn, &caller.tenant_id)
                .await?
                .into_iter()
                .map(|a| a.id)
                .collect()
        }
    };
    let now = Utc::now();
    let threshold = state.low_battery_percent;
    let mut response = pb::SyncLocksResponse::default();
    for account in accounts {
        match sync_account(state, &caller.tenant_id, account).await {
            Ok(report) => {
                let to = |rows: Vec<LockRow>| {
                    rows.iter()
                        .map(|r| message(r, threshold, now))
                        .collect::<Vec<_>>()
                };
                response.added.extend(to(report.added));
                response.removed.extend(to(report.removed));
                response.changed.extend(to(report.changed));
                response.unchanged += i32::try_from(report.unchanged).unwrap_or(i32::MAX);
            }
            // One named account that does not exist is the caller's mistake.
            Err(crate::error::Error::Api(ApiError::NotFound { .. })) if account_id.is_empty() => {}
            Err(crate::error::Error::Api(ApiError::Unavailable { message, .. }))
                if account_id.is_empty() =>
            {
                response.failures.push(pb::AccountFailure {
                    account_id: account.to_string(),
                    errcode: 0,
                    detail: message,
                });
            }
            Err(error) => return Err(error),
        }
    }
    Ok(response)
}

/// `ListLocks`, paged by `(account, lock)`.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    request: pb::ListLocksRequest,
) -> Result<pb::ListLocksResponse> {
    let mut violations = FieldViolations::default();
    let account = account_of(&request.account_id, "account_id", &mut violations);
    let size = latchkey::pagination::page_size(request.page_size, &mut violations);
    let after = if request.page_token.is_empty() {
        None
    } else {
        let parsed = request
            .page_token
            .strip_prefix("l1.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(a, l)| Some((Uuid::try_parse(a).ok()?, l.parse::<i64>().ok()?)));
        if parsed.is_none() {
            violations.add("page_token", "is not a token this method returned");
        }
        parsed
    };
    violations.check()?;
    let mut conn = state.pool.get().await?;
    let mut rows = locks::page(&mut conn, &caller.tenant_id, account, after, size + 1).await?;
    let next_page_token = if rows.len() as i64 > size {
        rows.truncate(usize::try_from(size).unwrap_or(0));
        rows.last()
            .map(|r| format!("l1.{}.{}", r.account_id, r.lock_id))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let now = Utc::now();
    Ok(pb::ListLocksResponse {
        locks: rows
            .iter()
            .map(|r| message(r, state.low_battery_percent, now))
            .collect(),
        next_page_token,
    })
}

/// `GetLock`.
pub async fn get(
    state: &AppState,
    caller: &Caller,
    account_id: &str,
    lock_id: i64,
) -> Result<pb::Lock> {
    let mut violations = FieldViolations::default();
    let account = account_of(account_id, "account_id", &mut violations);
    if account_id.is_empty() {
        violations.add("account_id", "is required");
    }
    if lock_id <= 0 {
        violations.add("lock_id", "must be a TTLock lock id");
    }
    violations.check()?;
    let account = account.unwrap_or_default();
    let mut conn = state.pool.get().await?;
    let row = locks::get(&mut conn, &caller.tenant_id, account, lock_id)
        .await?
        .ok_or_else(|| ApiError::not_found("lock", lock_id.to_string()))?;
    Ok(message(&row, state.low_battery_percent, Utc::now()))
}

/// Syncs each account when it falls due, on whichever replica claims it first.
pub fn spawn_periodic(
    state: AppState,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let tick = (interval / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(
        async move {
            loop {
                match claim_due(&state, interval).await {
                    Ok(due) => {
                        for (tenant, account) in due {
                            if let Err(error) = sync_account(&state, &tenant, account).await {
                                tracing::warn!(%account, ?error, "periodic lock sync failed");
                            }
                        }
                    }
                    Err(error) => tracing::warn!(?error, "cannot claim accounts to sync"),
                }
                tokio::select! {
                    () = tokio::time::sleep(tick) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
        .instrument(tracing::info_span!("locks.periodic_sync")),
    )
}

async fn claim_due(state: &AppState, interval: Duration) -> Result<Vec<(String, Uuid)>> {
    let mut conn = state.pool.get().await?;
    Ok(accounts::claim_due(&mut conn, interval, 16).await?)
}
