//! Appending to and reading the audit log. [`append`] must run inside a transaction: it
//! locks each tenant's chain head, so appenders (the group-commit writer and
//! administrative changes) chain their rows one after another.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Bytea, Int8, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::chain::{GENESIS, hash_row};
use super::{AuditAction, AuditEntry, AuditRow};
use crate::db::schema::{audit_heads, audit_log};

/// Live detection of failure bursts: a failed attempt is flagged when, with it, its user
/// or its IP address has at least `threshold` failures within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurstRule {
    pub window: Duration,
    pub threshold: i64,
}

impl BurstRule {
    /// The rule as the service's settings ask for it.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            window: Duration::minutes(config.suspicious_window_minutes.max(1)),
            threshold: config.suspicious_threshold.max(1),
        }
    }
}

impl Default for BurstRule {
    fn default() -> Self {
        Self {
            window: Duration::minutes(5),
            threshold: 5,
        }
    }
}

/// `audit_log` as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct Record {
    pub tenant_id: String,
    pub sequence: i64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub door_id: String,
    pub door_name: String,
    pub door_type: String,
    pub door_location: String,
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub user_role: String,
    pub method: String,
    pub success: bool,
    pub reason_code: String,
    pub reason: String,
    pub rule_id: String,
    pub rule_version: i64,
    pub client_ip: String,
    pub request_id: String,
    pub target_type: String,
    pub target_id: String,
    pub metadata: String,
    pub flagged: bool,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl Record {
    /// The row as the chain sees it. An action name this build does not know makes the
    /// row unverifiable, which verification reports.
    pub fn into_row(self) -> AuditRow {
        let action = AuditAction::parse(&self.action).unwrap_or(AuditAction::LogsPurged);
        let unknown_action = AuditAction::parse(&self.action).is_none();
        AuditRow {
            entry: AuditEntry {
                tenant_id: self.tenant_id,
                time: self.time,
                actor: self.actor,
                action,
                door_id: self.door_id,
                door_name: self.door_name,
                door_type: self.door_type,
                door_location: self.door_location,
                user_id: self.user_id,
                user_name: self.user_name,
                user_email: self.user_email,
                user_role: self.user_role,
                method: self.method,
                success: self.success,
                reason_code: self.reason_code,
                reason: self.reason,
                rule_id: self.rule_id,
                rule_version: self.rule_version,
                client_ip: self.client_ip,
                request_id: self.request_id,
                target_type: self.target_type,
                target_id: self.target_id,
                metadata: self.metadata,
            },
            sequence: self.sequence,
            flagged: self.flagged,
            prev_hash: self.prev_hash,
            // A row whose action was altered to an unknown name can never verify.
            hash: if unknown_action {
                Vec::new()
            } else {
                self.hash
            },
        }
    }
}

/// Locks `tenant`'s chain head, creating it on the tenant's first row.
async fn lock_head(conn: &mut AsyncPgConnection, tenant: &str) -> QueryResult<Head> {
    diesel::insert_into(audit_heads::table)
        .values((
            audit_heads::tenant_id.eq(tenant),
            audit_heads::sequence.eq(0_i64),
            audit_heads::hash.eq(GENESIS.to_vec()),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let (sequence, hash) = audit_heads::table
        .find(tenant)
        .select((audit_heads::sequence, audit_heads::hash))
        .for_update()
        .first(conn)
        .await?;
    Ok(Head { sequence, hash })
}

/// A committed failure of one of the users or addresses a run asks about.
#[derive(Debug, QueryableByName)]
struct RecentFailure {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Timestamptz)]
    time: DateTime<Utc>,
}

/// The latest committed failures after `since` of each of `users` and of each of `ips`,
/// at most `limit` of each: whether a burst completes needs no more than that, so the
/// work per run stays bounded however long an attack has run.
async fn recent_failures(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    since: DateTime<Utc>,
    users: Vec<&str>,
    ips: Vec<&str>,
    limit: i64,
) -> QueryResult<Vec<RecentFailure>> {
    diesel::sql_query(
        "SELECT 'user' AS kind, k.key, f.time FROM unnest($2::text[]) AS k(key) \
         CROSS JOIN LATERAL (SELECT l.time FROM audit_log l WHERE l.tenant_id = $1 \
           AND NOT l.success AND l.user_id = k.key AND l.time > $4 AND l.action = ANY($6) \
           ORDER BY l.time DESC LIMIT $5) f \
         UNION ALL \
         SELECT 'ip', k.key, f.time FROM unnest($3::text[]) AS k(key) \
         CROSS JOIN LATERAL (SELECT l.time FROM audit_log l WHERE l.tenant_id = $1 \
           AND NOT l.success AND l.client_ip = k.key AND l.time > $4 AND l.action = ANY($6) \
           ORDER BY l.time DESC LIMIT $5) f",
    )
    .bind::<Text, _>(tenant)
    .bind::<Array<Text>, _>(users)
    .bind::<Array<Text>, _>(ips)
    .bind::<Timestamptz, _>(since)
    .bind::<Int8, _>(limit)
    .bind::<Array<Text>, _>(vec![
        AuditAction::AccessDenied.as_str(),
        AuditAction::UnlockFailed.as_str(),
    ])
    .load(conn)
    .await
}

/// Where a tenant's chain ends: the last row's sequence and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub sequence: i64,
    pub hash: Vec<u8>,
}

impl Head {
    /// The head after `rows`, which follow this one.
    pub fn after(rows: &[AuditRow]) -> Option<Self> {
        rows.last().map(|row| Self {
            sequence: row.sequence,
            hash: row.hash.clone(),
        })
    }
}

/// Places `entries` after `head`, in order. `flags[i]` says whether entry `i` completed a
/// burst of failures (it is part of what the hash covers).
pub fn chain(head: &Head, entries: Vec<AuditEntry>, flags: &[bool]) -> Vec<AuditRow> {
    let mut sequence = head.sequence;
    let mut prev = head.hash.clone();
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            sequence += 1;
            let flagged = flags.get(index).copied().unwrap_or(false);
            let hash = hash_row(&entry, sequence, flagged, &prev);
            AuditRow {
                entry,
                sequence,
                flagged,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect()
}

/// Whether `entry` is a failed attempt, the kind bursts are made of.
pub fn is_attempt_failure(entry: &AuditEntry) -> bool {
    !entry.success
        && matches!(
            entry.action,
            AuditAction::AccessDenied | AuditAction::UnlockFailed
        )
}

/// Appends `entries` to their tenants' chains, in order within each tenant; returns the
/// stored rows in the order given. Call inside a transaction.
pub async fn append(
    conn: &mut AsyncPgConnection,
    entries: Vec<AuditEntry>,
    burst: BurstRule,
) -> QueryResult<Vec<AuditRow>> {
    // Lock heads in one order (by tenant) so concurrent batches cannot deadlock.
    let mut by_tenant: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        by_tenant
            .entry(entry.tenant_id.clone())
            .or_default()
            .push(index);
    }
    let mut entries: Vec<Option<AuditEntry>> = entries.into_iter().map(Some).collect();
    let mut rows: Vec<Option<AuditRow>> = vec![None; entries.len()];
    for (tenant, indexes) in by_tenant {
        let head = lock_head(conn, &tenant).await?;
        let run: Vec<AuditEntry> = indexes
            .iter()
            .filter_map(|&index| entries[index].take())
            .collect();
        let flags = burst_flags(conn, &tenant, &run, burst).await?;
        let chained = chain(&head, run, &flags);
        if !append_run(conn, &chained).await? {
            // The head is locked by this transaction; it cannot have moved.
            return Err(diesel::result::Error::RollbackTransaction);
        }
        for (index, row) in indexes.into_iter().zip(chained) {
            rows[index] = Some(row);
        }
    }
    Ok(rows.into_iter().flatten().collect())
}

/// For each of one tenant's entries, whether it completes a burst: committed failures
/// within the window, and those earlier in `run`, count toward it. One query per run.
async fn burst_flags(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    run: &[AuditEntry],
    burst: BurstRule,
) -> QueryResult<Vec<bool>> {
    let failures: Vec<&AuditEntry> = run.iter().filter(|e| is_attempt_failure(e)).collect();
    let Some(since) = failures.iter().map(|e| e.time - burst.window).min() else {
        return Ok(vec![false; run.len()]);
    };
    let distinct = |key: fn(&AuditEntry) -> &str| {
        let mut keys: Vec<&str> = failures
            .iter()
            .map(|e| key(e))
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    };
    let users = distinct(|e| &e.user_id);
    let ips = distinct(|e| &e.client_ip);
    // The entry itself completes the count, so `threshold - 1` earlier failures decide.
    let needed = (burst.threshold - 1).max(0);
    let found = if needed > 0 {
        recent_failures(conn, tenant, since, users, ips, needed).await?
    } else {
        Vec::new()
    };
    let mut committed: BTreeMap<(bool, &str), Vec<DateTime<Utc>>> = BTreeMap::new();
    for failure in &found {
        committed
            .entry((failure.kind == "user", failure.key.as_str()))
            .or_default()
            .push(failure.time);
    }
    Ok(flag_run(run, burst, &committed))
}

/// Flags each failure of `run` that, with the committed failures of its user or address
/// and those before it in the run, reaches the threshold within the window.
fn flag_run(
    run: &[AuditEntry],
    burst: BurstRule,
    committed: &BTreeMap<(bool, &str), Vec<DateTime<Utc>>>,
) -> Vec<bool> {
    let mut flags = vec![false; run.len()];
    let mut earlier: Vec<(DateTime<Utc>, &str, &str)> = Vec::new();
    for (index, entry) in run.iter().enumerate() {
        if !is_attempt_failure(entry) {
            continue;
        }
        let since = entry.time - burst.window;
        let count = |by_user: bool, key: &str| -> i64 {
            if key.is_empty() {
                return 0;
            }
            let stored = committed
                .get(&(by_user, key))
                .map_or(0, |times| times.iter().filter(|t| **t > since).count());
            let in_run = earlier
                .iter()
                .filter(|(time, user, ip)| {
                    *time > since && key == if by_user { *user } else { *ip }
                })
                .count();
            i64::try_from(stored + in_run).unwrap_or(i64::MAX)
        };
        // This attempt itself completes the count.
        flags[index] = (!entry.user_id.is_empty()
            && count(true, &entry.user_id) + 1 >= burst.threshold)
            || (!entry.client_ip.is_empty()
                && count(false, &entry.client_ip) + 1 >= burst.threshold);
        earlier.push((entry.time, &entry.user_id, &entry.client_ip));
    }
    flags
}

diesel::define_sql_function! {
    /// Migration `2026-12-01-000005_audit_append`: inserts one tenant's linked run of
    /// rows and moves its head, if the head is still the row the first one links to.
    #[allow(clippy::too_many_arguments)]
    fn append_audit_rows(
        tenant_id: Array<Text>,
        sequence: Array<Int8>,
        time: Array<Timestamptz>,
        actor: Array<Text>,
        action: Array<Text>,
        door_id: Array<Text>,
        door_name: Array<Text>,
        door_type: Array<Text>,
        door_location: Array<Text>,
        user_id: Array<Text>,
        user_name: Array<Text>,
        user_email: Array<Text>,
        user_role: Array<Text>,
        method: Array<Text>,
        success: Array<Bool>,
        reason_code: Array<Text>,
        reason: Array<Text>,
        rule_id: Array<Text>,
        rule_version: Array<Int8>,
        client_ip: Array<Text>,
        request_id: Array<Text>,
        target_type: Array<Text>,
        target_id: Array<Text>,
        metadata: Array<Text>,
        flagged: Array<Bool>,
        prev_hash: Array<Bytea>,
        hash: Array<Bytea>,
    ) -> Bool;
}

/// Appends one tenant's run of rows, chained by [`chain`], in one statement: the rows
/// go in and the head moves to the last of them only if the head is still the row the
/// first one links to. Returns false, having written nothing, if it is not. On its own
/// connection, outside a transaction, the statement is its own transaction.
///
/// The statement's text is the same for every run, so it is prepared once per
/// connection.
pub async fn append_run(conn: &mut AsyncPgConnection, rows: &[AuditRow]) -> QueryResult<bool> {
    if rows.is_empty() {
        return Ok(true);
    }
    fn column<'a, T>(rows: &'a [AuditRow], field: impl Fn(&'a AuditRow) -> T) -> Vec<T> {
        rows.iter().map(field).collect()
    }
    let text = |field: fn(&AuditEntry) -> &str| column(rows, move |r| field(&r.entry));
    diesel::select(append_audit_rows(
        text(|e| &e.tenant_id),
        column(rows, |r| r.sequence),
        column(rows, |r| r.entry.time),
        text(|e| &e.actor),
        text(|e| e.action.as_str()),
        text(|e| &e.door_id),
        text(|e| &e.door_name),
        text(|e| &e.door_type),
        text(|e| &e.door_location),
        text(|e| &e.user_id),
        text(|e| &e.user_name),
        text(|e| &e.user_email),
        text(|e| &e.user_role),
        text(|e| &e.method),
        column(rows, |r| r.entry.success),
        text(|e| &e.reason_code),
        text(|e| &e.reason),
        text(|e| &e.rule_id),
        column(rows, |r| r.entry.rule_version),
        text(|e| &e.client_ip),
        text(|e| &e.request_id),
        text(|e| &e.target_type),
        text(|e| &e.target_id),
        text(|e| &e.metadata),
        column(rows, |r| r.flagged),
        column(rows, |r| r.prev_hash.as_slice()),
        column(rows, |r| r.hash.as_slice()),
    ))
    .get_result(conn)
    .await
}
