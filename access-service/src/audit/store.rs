//! Appending to and reading the audit log. [`append`] must run inside a transaction: it
//! locks each tenant's chain head, so appenders (the group-commit writer and
//! administrative changes) chain their rows one after another.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
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
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
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
    fn from_row(row: &AuditRow) -> Self {
        let e = &row.entry;
        Self {
            tenant_id: e.tenant_id.clone(),
            sequence: row.sequence,
            time: e.time,
            actor: e.actor.clone(),
            action: e.action.as_str().to_owned(),
            door_id: e.door_id.clone(),
            door_name: e.door_name.clone(),
            door_type: e.door_type.clone(),
            door_location: e.door_location.clone(),
            user_id: e.user_id.clone(),
            user_name: e.user_name.clone(),
            user_email: e.user_email.clone(),
            user_role: e.user_role.clone(),
            method: e.method.clone(),
            success: e.success,
            reason_code: e.reason_code.clone(),
            reason: e.reason.clone(),
            rule_id: e.rule_id.clone(),
            rule_version: e.rule_version,
            client_ip: e.client_ip.clone(),
            request_id: e.request_id.clone(),
            target_type: e.target_type.clone(),
            target_id: e.target_id.clone(),
            metadata: e.metadata.clone(),
            flagged: row.flagged,
            prev_hash: row.prev_hash.clone(),
            hash: row.hash.clone(),
        }
    }

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

fn is_attempt_failure(entry: &AuditEntry) -> bool {
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
    let mut rows: Vec<Option<AuditRow>> = vec![None; entries.len()];
    let mut records = Vec::with_capacity(entries.len());
    for (tenant, indexes) in by_tenant {
        let (mut sequence, mut prev) = lock_head(conn, &tenant).await?;
        // Failures earlier in this batch count toward later ones' bursts.
        let mut batch_failures: Vec<(DateTime<Utc>, String, String)> = Vec::new();
        for index in indexes {
            let entry = entries[index].clone();
            let mut flagged = false;
            if is_attempt_failure(&entry) {
                let since = entry.time - burst.window;
                let (mut by_user, mut by_ip) =
                    recent_failures(conn, &tenant, since, &entry.user_id, &entry.client_ip).await?;
                for (time, user, ip) in &batch_failures {
                    if *time > since {
                        by_user += i64::from(!entry.user_id.is_empty() && *user == entry.user_id);
                        by_ip += i64::from(!entry.client_ip.is_empty() && *ip == entry.client_ip);
                    }
                }
                // This attempt itself completes the count.
                flagged = (!entry.user_id.is_empty() && by_user + 1 >= burst.threshold)
                    || (!entry.client_ip.is_empty() && by_ip + 1 >= burst.threshold);
                batch_failures.push((entry.time, entry.user_id.clone(), entry.client_ip.clone()));
            }
            sequence += 1;
            let hash = hash_row(&entry, sequence, flagged, &prev);
            let row = AuditRow {
                entry,
                sequence,
                flagged,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            };
            records.push(Record::from_row(&row));
            rows[index] = Some(row);
        }
        diesel::insert_into(audit_heads::table)
            .values((
                audit_heads::tenant_id.eq(&tenant),
                audit_heads::sequence.eq(sequence),
                audit_heads::hash.eq(&prev),
            ))
            .on_conflict(audit_heads::tenant_id)
            .do_update()
            .set((
                audit_heads::sequence.eq(excluded(audit_heads::sequence)),
                audit_heads::hash.eq(excluded(audit_heads::hash)),
            ))
            .execute(conn)
            .await?;
    }
    insert_records(conn, &records).await?;
    Ok(rows.into_iter().flatten().collect())
}

/// Inserts a batch as one statement of column arrays: the same text for every batch
/// size, so it is prepared once per connection instead of parsed anew with thousands
/// of parameters for each batch.
async fn insert_records(conn: &mut AsyncPgConnection, records: &[Record]) -> QueryResult<()> {
    use diesel::sql_types::{Array, Bool, Bytea, Int8, Text, Timestamptz};
    match records {
        [] => return Ok(()),
        // A lone row (an idle service, an administrative change) as a plain insert:
        // cheaper to plan than the array form.
        [record] => {
            diesel::insert_into(audit_log::table)
                .values(record)
                .execute(conn)
                .await?;
            return Ok(());
        }
        _ => {}
    }
    fn column<T>(records: &[Record], field: impl Fn(&Record) -> T) -> Vec<T> {
        records.iter().map(field).collect()
    }
    let text = |field: fn(&Record) -> &String| column(records, |r| field(r).clone());
    diesel::sql_query(
        "INSERT INTO audit_log (tenant_id, sequence, time, actor, action, door_id, door_name, \
         door_type, door_location, user_id, user_name, user_email, user_role, method, success, \
         reason_code, reason, rule_id, rule_version, client_ip, request_id, target_type, \
         target_id, metadata, flagged, prev_hash, hash) \
         SELECT * FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::text[], \
         $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
         $12::text[], $13::text[], $14::text[], $15::bool[], $16::text[], $17::text[], \
         $18::text[], $19::int8[], $20::text[], $21::text[], $22::text[], $23::text[], \
         $24::text[], $25::bool[], $26::bytea[], $27::bytea[])",
    )
    .bind::<Array<Text>, _>(text(|r| &r.tenant_id))
    .bind::<Array<Int8>, _>(column(records, |r| r.sequence))
    .bind::<Array<Timestamptz>, _>(column(records, |r| r.time))
    .bind::<Array<Text>, _>(text(|r| &r.actor))
    .bind::<Array<Text>, _>(text(|r| &r.action))
    .bind::<Array<Text>, _>(text(|r| &r.door_id))
    .bind::<Array<Text>, _>(text(|r| &r.door_name))
    .bind::<Array<Text>, _>(text(|r| &r.door_type))
    .bind::<Array<Text>, _>(text(|r| &r.door_location))
    .bind::<Array<Text>, _>(text(|r| &r.user_id))
    .bind::<Array<Text>, _>(text(|r| &r.user_name))
    .bind::<Array<Text>, _>(text(|r| &r.user_email))
    .bind::<Array<Text>, _>(text(|r| &r.user_role))
    .bind::<Array<Text>, _>(text(|r| &r.method))
    .bind::<Array<Bool>, _>(column(records, |r| r.success))
    .bind::<Array<Text>, _>(text(|r| &r.reason_code))
    .bind::<Array<Text>, _>(text(|r| &r.reason))
    .bind::<Array<Text>, _>(text(|r| &r.rule_id))
    .bind::<Array<Int8>, _>(column(records, |r| r.rule_version))
    .bind::<Array<Text>, _>(text(|r| &r.client_ip))
    .bind::<Array<Text>, _>(text(|r| &r.request_id))
    .bind::<Array<Text>, _>(text(|r| &r.target_type))
    .bind::<Array<Text>, _>(text(|r| &r.target_id))
    .bind::<Array<Text>, _>(text(|r| &r.metadata))
    .bind::<Array<Bool>, _>(column(records, |r| r.flagged))
    .bind::<Array<Bytea>, _>(column(records, |r| r.prev_hash.clone()))
    .bind::<Array<Bytea>, _>(column(records, |r| r.hash.clone()))
    .execute(conn)
    .await?;
    Ok(())
}
