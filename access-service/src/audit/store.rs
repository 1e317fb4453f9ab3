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
async fn lock_head(conn: &mut AsyncPgConnection, tenant: &str) -> QueryResult<(i64, Vec<u8>)> {
    diesel::insert_into(audit_heads::table)
        .values((
            audit_heads::tenant_id.eq(tenant),
            audit_heads::sequence.eq(0_i64),
            audit_heads::hash.eq(GENESIS.to_vec()),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    audit_heads::table
        .find(tenant)
        .select((audit_heads::sequence, audit_heads::hash))
        .for_update()
        .first(conn)
        .await
}

/// Failures within the burst window before `now`, of a user and of an IP address.
async fn recent_failures(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    since: DateTime<Utc>,
    user_id: &str,
    client_ip: &str,
) -> QueryResult<(i64, i64)> {
    let base = || {
        audit_log::table
            .filter(audit_log::tenant_id.eq(tenant))
            .filter(audit_log::success.eq(false))
            .filter(audit_log::time.gt(since))
            .filter(audit_log::action.eq_any([
                AuditAction::AccessDenied.as_str(),
                AuditAction::UnlockFailed.as_str(),
            ]))
    };
    let by_user = if user_id.is_empty() {
        0
    } else {
        base()
            .filter(audit_log::user_id.eq(user_id))
            .count()
            .get_result(conn)
            .await?
    };
    let by_ip = if client_ip.is_empty() {
        0
    } else {
        base()
            .filter(audit_log::client_ip.eq(client_ip))
            .count()
            .get_result(conn)
            .await?
    };
    Ok((by_user, by_ip))
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
        let (sequence, hash) = lock_head(conn, &tenant).await?;
        let run: Vec<AuditEntry> = indexes
            .iter()
            .filter_map(|&index| entries[index].take())
            .collect();
        let flags = burst_flags(conn, &tenant, &run, burst).await?;
        let chained = chain(&Head { sequence, hash }, run, &flags);
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
/// within the window, and those earlier in `run`, count toward it.
async fn burst_flags(
    conn: &mut AsyncPgConnection,
    tenant: &str,
    run: &[AuditEntry],
    burst: BurstRule,
) -> QueryResult<Vec<bool>> {
    let mut flags = vec![false; run.len()];
    let mut earlier: Vec<(DateTime<Utc>, &str, &str)> = Vec::new();
    for (index, entry) in run.iter().enumerate() {
        if !is_attempt_failure(entry) {
            continue;
        }
        let since = entry.time - burst.window;
        let (mut by_user, mut by_ip) =
            recent_failures(conn, tenant, since, &entry.user_id, &entry.client_ip).await?;
        for (time, user, ip) in &earlier {
            if *time > since {
                by_user += i64::from(!entry.user_id.is_empty() && *user == entry.user_id);
                by_ip += i64::from(!entry.client_ip.is_empty() && *ip == entry.client_ip);
            }
        }
        // This attempt itself completes the count.
        flags[index] = (!entry.user_id.is_empty() && by_user + 1 >= burst.threshold)
            || (!entry.client_ip.is_empty() && by_ip + 1 >= burst.threshold);
        earlier.push((entry.time, &entry.user_id, &entry.client_ip));
    }
    Ok(flags)
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
