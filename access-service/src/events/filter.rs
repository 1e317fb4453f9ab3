//! What a subscription asks for, narrowed to what its caller may see: ADMIN, MANAGER and
//! SERVICE see the whole tenant; anyone else sees only events naming themselves.

use std::collections::HashSet;

use latchkey::auth::Caller;
use latchkey::error::FieldViolations;
use latchkey::pb::access::v1 as pb;
use pb::EventKind as Kind;

/// Ids per list at most: a subscription names a few doors, not a directory.
const MAX_IDS: usize = 1000;
const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    properties: HashSet<String>,
    doors: HashSet<String>,
    users: HashSet<String>,
    kinds: HashSet<i32>,
    /// Set for callers who see only themselves.
    only_user: Option<String>,
}

fn ids(values: &[String], field: &str, violations: &mut FieldViolations) -> HashSet<String> {
    if values.len() > MAX_IDS {
        violations.add(field, format!("names at most {MAX_IDS} ids"));
    }
    for (index, value) in values.iter().enumerate() {
        if value.is_empty() || value.len() > MAX_ID_LEN {
            violations.add(
                format!("{field}[{index}]"),
                format!("must be an id of 1 to {MAX_ID_LEN} characters"),
            );
        }
    }
    values.iter().cloned().collect()
}

impl Filter {
    /// The filter of a request's `field` for `caller`.
    pub fn new(
        filter: Option<&pb::EventFilter>,
        caller: &Caller,
        field: &str,
        violations: &mut FieldViolations,
    ) -> Self {
        let empty = pb::EventFilter::default();
        let filter = filter.unwrap_or(&empty);
        let mut kinds = HashSet::new();
        for (index, kind) in filter.kinds.iter().enumerate() {
            match Kind::try_from(*kind) {
                Ok(Kind::Unspecified) | Err(_) => violations.add(
                    format!("{field}.kinds[{index}]"),
                    "must be an EventKind other than UNSPECIFIED",
                ),
                Ok(kind) => {
                    kinds.insert(kind as i32);
                }
            }
        }
        if kinds.is_empty() {
            kinds = all_kinds()
                .filter(|kind| filter.include_decisions || !super::project::is_decision(*kind))
                .collect();
        }
        Self {
            properties: ids(
                &filter.property_ids,
                &format!("{field}.property_ids"),
                violations,
            ),
            doors: ids(&filter.door_ids, &format!("{field}.door_ids"), violations),
            users: ids(&filter.user_ids, &format!("{field}.user_ids"), violations),
            kinds,
            only_user: (!crate::policy::sees_all_events(caller)).then(|| caller.user_id.clone()),
        }
    }

    pub fn matches(&self, event: &pb::Event) -> bool {
        self.kinds.contains(&event.kind)
            && (self.properties.is_empty() || self.properties.contains(&event.property_id))
            && (self.doors.is_empty() || self.doors.contains(&event.door_id))
            && (self.users.is_empty() || self.users.contains(&event.user_id))
            && self
                .only_user
                .as_ref()
                .is_none_or(|user| !user.is_empty() && *user == event.user_id)
    }

    /// The doors this filter keeps to, if it keeps to some: the tail reads only their rows
    /// for it.
    pub fn doors(&self) -> Option<Vec<String>> {
        (!self.doors.is_empty()).then(|| self.doors.iter().cloned().collect())
    }

    /// Whether decisions can pass: the tail reads their rows only for such streams.
    pub fn wants_decisions(&self) -> bool {
        self.kinds
            .iter()
            .any(|kind| super::project::is_decision(*kind))
    }
}

fn all_kinds() -> impl Iterator<Item = i32> {
    (1..=64).filter(|value| matches!(Kind::try_from(*value), Ok(kind) if kind != Kind::Unspecified))
}
