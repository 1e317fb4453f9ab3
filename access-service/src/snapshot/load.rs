//! Reading one tenant's access data from PostgreSQL into a [`TenantSnapshot`].

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::change::{Stale, StaleRules};
use super::{DoorEntry, TenantSnapshot, UserEntry};
use crate::db::schema::{
    access_code_doors, access_codes, doors, memberships, properties, rule_users, rules, tenants,
    users,
};
use crate::decision::{
    CodeKind, CodeView, DoorCodes, DoorKind, DoorRules, DoorView, MembershipState, MembershipView,
    RuleView, Slot, UserView,
};

/// A stored weekly slot, as `rules.time_slots` holds it.
#[derive(Debug, serde::Deserialize)]
struct StoredSlot {
    day_of_week: i32,
    start: String,
    end: String,
}

pub fn door_kind(name: &str) -> DoorKind {
    match name {
        "ENTRANCE" => DoorKind::Entrance,
        "FACILITY" => DoorKind::Facility,
        "ROOM" => DoorKind::Room,
        "UNIT" => DoorKind::Unit,
        "GATE" => DoorKind::Gate,
        _ => DoorKind::Other,
    }
}

fn membership_state(name: &str) -> MembershipState {
    match name {
        "ACTIVE" => MembershipState::Active,
        "FROZEN" => MembershipState::Frozen,
        "SUSPENDED" => MembershipState::Suspended,
        _ => MembershipState::Cancelled,
    }
}

fn zone(name: &str) -> Tz {
    Tz::from_str(name).unwrap_or(Tz::UTC)
}

type DoorRow = (
    Uuid,
    Uuid,
    String,
    String,
    String,
    Option<String>,
    bool,
    Option<Uuid>,
    Option<i64>,
    String,
    Option<DateTime<Utc>>,
);
type UserRow = (Uuid, Option<String>, String, String, Vec<String>, bool);
type MembershipRow = (Uuid, String, DateTime<Utc>, Option<DateTime<Utc>>);
type RuleRow = (
    Uuid,
    Uuid,
    String,
    i64,
    bool,
    Vec<String>,
    serde_json::Value,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);
type CodeRow = (
    Uuid,
    Vec<u8>,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    serde_json::Value,
    i32,
    i32,
    Option<Uuid>,
    String,
    String,
);

pub fn code_kind(name: &str) -> CodeKind {
    match name {
        "PERMANENT" => CodeKind::Permanent,
        "RECURRING" => CodeKind::Recurring,
        _ => CodeKind::Temporary,
    }
}

/// Loads everything decisions for `tenant` need, in one repeatable-read transaction so
/// the parts agree with each other: an empty snapshot with every part read.
pub async fn tenant(conn: &mut AsyncPgConnection, tenant_id: &str) -> QueryResult<TenantSnapshot> {
    refresh(conn, tenant_id, &TenantSnapshot::default(), &Stale::all()).await
}

/// `old` with its `stale` parts read again, in one repeatable-read transaction so the
/// parts read agree with each other; the rest is shared with `old`.
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    old: &TenantSnapshot,
    stale: &Stale,
) -> QueryResult<TenantSnapshot> {
    conn.build_transaction()
        .read_only()
        .repeatable_read()
        .run(async |conn| {
            let mut next = old.share();
            if stale.doors {
                let (enabled, doors, order) = doors(conn, tenant_id).await?;
                next.tenant_enabled = enabled;
                next.doors = Arc::new(doors);
                next.door_order = Arc::new(order);
            }
            if stale.users {
                let (users, by_external_id) = users(conn, tenant_id).await?;
                next.users = Arc::new(users);
                next.users_by_external_id = Arc::new(by_external_id);
            }
            if stale.memberships {
                next.memberships = Arc::new(memberships(conn, tenant_id).await?);
            }
            if stale.codes {
                next.codes = Arc::new(codes(conn, tenant_id).await?);
            }
            match &stale.rules {
                StaleRules::Fresh => {}
                StaleRules::All => next.rules = Arc::new(rules(conn, tenant_id, Which::All).await?),
                StaleRules::Parts {
                    doors,
                    rules: changed,
                } => {
                    let mut by_door = HashMap::clone(&old.rules);
                    if !doors.is_empty() {
                        let doors: Vec<Uuid> = doors.iter().copied().collect();
                        let fresh = rules(conn, tenant_id, Which::Doors(&doors)).await?;
                        for door in &doors {
                            by_door.remove(door);
                        }
                        by_door.extend(fresh);
                    }
                    if !changed.is_empty() {
                        by_door = patch_rules(conn, tenant_id, by_door, doors, changed).await?;
                    }
                    next.rules = Arc::new(by_door);
                }
            }
            Ok(next)
        })
        .await
}

/// The tenant's settings, its doors by id and their ids in ascending order.
async fn doors(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
) -> QueryResult<(bool, HashMap<Uuid, DoorEntry>, Vec<Uuid>)> {
    let settings: Option<(bool, String)> = tenants::table
        .find(tenant_id)
        .select((tenants::door_access_enabled, tenants::default_time_zone))
        .first(conn)
        .await
        .optional()?;
    let (enabled, default_zone) = settings.unwrap_or((true, "UTC".to_owned()));
    let property_zones: HashMap<Uuid, String> = properties::table
        .filter(properties::tenant_id.eq(tenant_id))
        .select((properties::id, properties::time_zone))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();

    let door_rows: Vec<DoorRow> = doors::table
        .filter(doors::tenant_id.eq(tenant_id))
        .select((
            doors::id,
            doors::property_id,
            doors::name,
            doors::door_type,
            doors::location,
            doors::time_zone,
            doors::active,
            doors::lock_account_id,
            doors::lock_id,
            doors::status,
            doors::status_time,
        ))
        .order(doors::id.asc())
        .load(conn)
        .await?;

    let mut by_id = HashMap::with_capacity(door_rows.len());
    let mut order = Vec::with_capacity(door_rows.len());
    for (
        id,
        property_id,
        name,
        door_type,
        location,
        time_zone,
        active,
        account,
        lock_id,
        status,
        status_time,
    ) in door_rows
    {
        let zone_name = time_zone
            .or_else(|| property_zones.get(&property_id).cloned())
            .unwrap_or_else(|| default_zone.clone());
        order.push(id);
        by_id.insert(
            id,
            DoorEntry {
                view: DoorView {
                    id,
                    active,
                    kind: door_kind(&door_type),
                    tz: zone(&zone_name),
                },
                property_id,
                name,
                door_type,
                location,
                time_zone: zone_name,
                lock: account.zip(lock_id),
                status,
                status_time,
            },
        );
    }
    Ok((enabled, by_id, order))
}

type Users = (HashMap<Uuid, UserEntry>, HashMap<String, Uuid>);

/// The tenant's users by id, and the ids of those with an external id by it.
async fn users(conn: &mut AsyncPgConnection, tenant_id: &str) -> QueryResult<Users> {
    let user_rows: Vec<UserRow> = users::table
        .filter(users::tenant_id.eq(tenant_id))
        .select((
            users::id,
            users::external_id,
            users::name,
            users::email,
            users::roles,
            users::active,
        ))
        .load(conn)
        .await?;
    off_thread(move || {
        let mut by_id = HashMap::with_capacity(user_rows.len());
        let mut by_external_id = HashMap::new();
        for (id, external_id, name, email, roles, active) in user_rows {
            if let Some(external) = &external_id {
                by_external_id.insert(external.clone(), id);
            }
            by_id.insert(
                id,
                UserEntry {
                    view: UserView { id, active, roles },
                    external_id,
                    name,
                    email,
                },
            );
        }
        (by_id, by_external_id)
    })
    .await
}

/// Each user's memberships.
async fn memberships(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
) -> QueryResult<HashMap<Uuid, Vec<MembershipView>>> {
    let membership_rows: Vec<MembershipRow> = memberships::table
        .filter(memberships::tenant_id.eq(tenant_id))
        .select((
            memberships::user_id,
            memberships::status,
            memberships::start_time,
            memberships::end_time,
        ))
        .load(conn)
        .await?;
    off_thread(move || {
        let mut by_user: HashMap<Uuid, Vec<MembershipView>> = HashMap::new();
        for (user_id, status, start, end) in membership_rows {
            by_user.entry(user_id).or_default().push(MembershipView {
                status: membership_state(&status),
                start,
                end,
            });
        }
        by_user
    })
    .await
}

/// Which of a tenant's rules to read.
#[derive(Debug, Clone, Copy)]
enum Which<'a> {
    All,
    /// Those of these doors.
    Doors(&'a [Uuid]),
    /// These rules, wherever they are now.
    Rules(&'a [Uuid]),
}

/// The rule index of each door of the tenant with rules, or of each of the doors asked
/// for that has any.
async fn rules(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    which: Which<'_>,
) -> QueryResult<HashMap<Uuid, Arc<DoorRules>>> {
    let (rule_rows, grant_rows) = stored_rules(conn, tenant_id, which).await?;
    off_thread(move || {
        rule_views_by_door(rule_rows, grant_rows)
            .into_iter()
            .map(|(door, rules)| (door, Arc::new(DoorRules::build(rules))))
            .collect()
    })
    .await
}

/// `by_door` with the `changed` rules (each with the door it was on) read again by id:
/// each door they were or now are on is patched, sharing its other rules, unless it is
/// one of `whole`, read whole already.
async fn patch_rules(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    mut by_door: HashMap<Uuid, Arc<DoorRules>>,
    whole: &HashSet<Uuid>,
    changed: &HashSet<(Uuid, Uuid)>,
) -> QueryResult<HashMap<Uuid, Arc<DoorRules>>> {
    let ids: Vec<Uuid> = changed.iter().map(|(_, rule)| *rule).collect();
    let (rule_rows, grant_rows) = stored_rules(conn, tenant_id, Which::Rules(&ids)).await?;
    let replaced: HashSet<Uuid> = ids.into_iter().collect();
    // The doors the rules were on, and those they are on now.
    let touched: HashSet<Uuid> = changed
        .iter()
        .map(|(door, _)| *door)
        .chain(rule_rows.iter().map(|row| row.1))
        .filter(|door| !whole.contains(door))
        .collect();
    off_thread(move || {
        let mut fresh = rule_views_by_door(rule_rows, grant_rows);
        for door in touched {
            let now = fresh.remove(&door).unwrap_or_default();
            let patched = match by_door.get(&door) {
                Some(rules) => rules.patched(&replaced, now),
                None => DoorRules::build(now),
            };
            if patched.is_vacant() {
                by_door.remove(&door);
            } else {
                by_door.insert(door, Arc::new(patched));
            }
        }
        by_door
    })
    .await
}

/// The rules asked for and their grants, as stored.
async fn stored_rules(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    which: Which<'_>,
) -> QueryResult<(Vec<RuleRow>, Vec<(Uuid, Uuid)>)> {
    let mut query = rules::table
        .filter(rules::tenant_id.eq(tenant_id))
        .select((
            rules::id,
            rules::door_id,
            rules::name,
            rules::version,
            rules::active,
            rules::roles,
            rules::time_slots,
            rules::valid_from,
            rules::valid_until,
        ))
        .into_boxed();
    match which {
        Which::All => {}
        Which::Doors(doors) => query = query.filter(rules::door_id.eq_any(doors)),
        Which::Rules(ids) => query = query.filter(rules::id.eq_any(ids)),
    }
    let rule_rows: Vec<RuleRow> = query.load(conn).await?;
    let grant_rows: Vec<(Uuid, Uuid)> = match which {
        Which::All => {
            rule_users::table
                .filter(rule_users::tenant_id.eq(tenant_id))
                .select((rule_users::rule_id, rule_users::user_id))
                .load(conn)
                .await?
        }
        Which::Rules(ids) => {
            rule_users::table
                .filter(rule_users::tenant_id.eq(tenant_id))
                .filter(rule_users::rule_id.eq_any(ids))
                .select((rule_users::rule_id, rule_users::user_id))
                .load(conn)
                .await?
        }
        Which::Doors(doors) => {
            rule_users::table
                .inner_join(rules::table)
                .filter(rule_users::tenant_id.eq(tenant_id))
                .filter(rules::door_id.eq_any(doors))
                .select((rule_users::rule_id, rule_users::user_id))
                .load(conn)
                .await?
        }
    };
    Ok((rule_rows, grant_rows))
}

/// Runs `build` on the blocking pool: indexing a large tenant's part takes long enough
/// to hold up the decisions that share the worker thread it would run on.
async fn off_thread<T: Send + 'static>(
    build: impl FnOnce() -> T + Send + 'static,
) -> QueryResult<T> {
    tokio::task::spawn_blocking(build)
        .await
        .map_err(|error| diesel::result::Error::DeserializationError(Box::new(error)))
}

/// Each door's rules, from the rules and their grants as stored.
fn rule_views_by_door(
    rule_rows: Vec<RuleRow>,
    grant_rows: Vec<(Uuid, Uuid)>,
) -> HashMap<Uuid, Vec<RuleView>> {
    let mut grants: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (rule_id, user_id) in grant_rows {
        grants.entry(rule_id).or_default().push(user_id);
    }
    let mut by_door: HashMap<Uuid, Vec<RuleView>> = HashMap::new();
    for (id, door_id, name, version, active, roles, slots, valid_from, valid_until) in rule_rows {
        let stored: Vec<StoredSlot> = serde_json::from_value(slots).unwrap_or_default();
        let slots = stored
            .iter()
            .filter_map(|s| Slot::parse(s.day_of_week, &s.start, &s.end).ok())
            .collect();
        by_door.entry(door_id).or_default().push(RuleView {
            id,
            name,
            version,
            active,
            user_ids: grants.remove(&id).unwrap_or_default(),
            roles,
            slots,
            valid_from,
            valid_until,
        });
    }
    by_door
}

/// Each door's active access codes.
async fn codes(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
) -> QueryResult<HashMap<Uuid, DoorCodes>> {
    let code_rows: Vec<CodeRow> = access_codes::table
        .filter(access_codes::tenant_id.eq(tenant_id))
        .filter(access_codes::status.eq("ACTIVE"))
        .select((
            access_codes::id,
            access_codes::code_hmac,
            access_codes::code_type,
            access_codes::start_time,
            access_codes::end_time,
            access_codes::time_slots,
            access_codes::max_usages,
            access_codes::usage_count,
            access_codes::user_id,
            access_codes::grantee_name,
            access_codes::code_last_digits,
        ))
        .load(conn)
        .await?;
    let code_doors: Vec<(Uuid, Uuid)> = access_code_doors::table
        .inner_join(access_codes::table)
        .filter(access_code_doors::tenant_id.eq(tenant_id))
        .filter(access_codes::status.eq("ACTIVE"))
        .select((access_code_doors::code_id, access_code_doors::door_id))
        .load(conn)
        .await?;

    off_thread(move || index_codes(code_rows, code_doors)).await
}

/// Each door's code index, from the active codes and their doors as stored.
fn index_codes(code_rows: Vec<CodeRow>, code_doors: Vec<(Uuid, Uuid)>) -> HashMap<Uuid, DoorCodes> {
    let codes: HashMap<Uuid, CodeView> = code_rows
        .into_iter()
        .map(
            |(id, hmac, kind, start, end, slots, max_usages, usage_count, user_id, name, last)| {
                let stored: Vec<StoredSlot> = serde_json::from_value(slots).unwrap_or_default();
                let view = CodeView {
                    id,
                    hmac,
                    kind: code_kind(&kind),
                    start,
                    end,
                    slots: stored
                        .iter()
                        .filter_map(|s| Slot::parse(s.day_of_week, &s.start, &s.end).ok())
                        .collect(),
                    max_usages,
                    usage_count,
                    user_id,
                    grantee_name: name,
                    last_digits: last,
                };
                (id, view)
            },
        )
        .collect();
    let mut codes_by_door: HashMap<Uuid, Vec<CodeView>> = HashMap::new();
    for (code_id, door_id) in code_doors {
        if let Some(view) = codes.get(&code_id) {
            codes_by_door.entry(door_id).or_default().push(view.clone());
        }
    }
    codes_by_door
        .into_iter()
        .map(|(door, codes)| (door, DoorCodes::build(codes)))
        .collect()
}
