//! One door's rules, indexed by the users and roles they name.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::RuleView;
use super::schedule::Times;

/// A rule with its slots folded for fast checks.
#[derive(Debug, Clone)]
pub(crate) struct IndexedRule {
    pub(crate) view: RuleView,
    pub(crate) times: Times,
}

impl IndexedRule {
    /// `valid_from` inclusive, `valid_until` exclusive; absent bounds are open.
    pub(crate) fn valid_at(&self, at: DateTime<Utc>) -> bool {
        self.view.valid_from.is_none_or(|from| from <= at)
            && self.view.valid_until.is_none_or(|until| at < until)
    }
}

/// The active rules of one door, built once per snapshot so that a decision only looks
/// at the rules naming the user or one of the user's roles.
///
/// Within each table rules keep the order given to [`DoorRules::build`]; when several
/// rules of the same kind would grant, the first decides.
#[derive(Debug, Clone, Default)]
pub struct DoorRules {
    rules: Vec<IndexedRule>,
    by_user: HashMap<Uuid, Vec<usize>>,
    by_role: HashMap<String, Vec<usize>>,
    inactive: usize,
}

impl DoorRules {
    /// Indexes the door's rules. Inactive rules are dropped: they never decide.
    pub fn build(rules: Vec<RuleView>) -> DoorRules {
        let mut index = DoorRules::default();
        for view in rules {
            if !view.active {
                index.inactive += 1;
                continue;
            }
            let at = index.rules.len();
            for user in &view.user_ids {
                let entries = index.by_user.entry(*user).or_default();
                // A rule naming the same user twice is looked at once.
                if entries.last() != Some(&at) {
                    entries.push(at);
                }
            }
            for role in view.roles.iter().filter(|r| !r.is_empty()) {
                let entries = index.by_role.entry(role.clone()).or_default();
                if entries.last() != Some(&at) {
                    entries.push(at);
                }
            }
            let times = Times::from_slots(&view.slots);
            index.rules.push(IndexedRule { view, times });
        }
        index
    }

    /// Active rules indexed.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Inactive rules left out.
    pub fn inactive(&self) -> usize {
        self.inactive
    }

    pub(crate) fn rule(&self, at: usize) -> Option<&IndexedRule> {
        self.rules.get(at)
    }

    /// Rules naming the user directly.
    pub(crate) fn for_user(&self, user: &Uuid) -> &[usize] {
        self.by_user.get(user).map_or(&[], Vec::as_slice)
    }

    /// Rules naming the role.
    pub(crate) fn for_role(&self, role: &str) -> &[usize] {
        self.by_role.get(role).map_or(&[], Vec::as_slice)
    }
}
