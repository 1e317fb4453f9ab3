//! One door's rules, indexed by the users and roles they name.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::RuleView;
use super::schedule::Times;

/// A rule with its slots folded for fast checks.
#[derive(Debug, Clone)]
pub struct IndexedRule {
    pub view: RuleView,
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
/// rules of the same kind would grant, the first decides. Rules changed since the build
/// ([`DoorRules::patched`]) sit in a small overlay after the rest, the shared base only
/// losing their old state, so an edit to one rule of a large door costs the overlay,
/// not the door; past a share of the base the two are built into one again.
#[derive(Debug, Clone, Default)]
pub struct DoorRules {
    base: Arc<Table>,
    /// Positions in `base` whose rule has changed since.
    replaced: HashSet<usize>,
    /// Rules changed or added since `base` was built, at positions after it.
    overlay: Table,
    /// Inactive rules left out: they never decide.
    inactive: HashSet<Uuid>,
}

/// Rules and their positions by the users and roles they name.
#[derive(Debug, Clone, Default)]
struct Table {
    rules: Vec<IndexedRule>,
    by_user: HashMap<Uuid, Vec<usize>>,
    by_role: HashMap<String, Vec<usize>>,
    by_id: HashMap<Uuid, usize>,
}

impl Table {
    /// Indexes `rules`, the first at position `offset`.
    fn new(rules: Vec<IndexedRule>, offset: usize) -> Table {
        let mut by_user: HashMap<Uuid, Vec<usize>> = HashMap::new();
        let mut by_role: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_id = HashMap::with_capacity(rules.len());
        for (at, rule) in rules.iter().enumerate() {
            let at = at + offset;
            by_id.insert(rule.view.id, at);
            for user in &rule.view.user_ids {
                let entries = by_user.entry(*user).or_default();
                // A rule naming the same user twice is looked at once.
                if entries.last() != Some(&at) {
                    entries.push(at);
                }
            }
            for role in rule.view.roles.iter().filter(|r| !r.is_empty()) {
                // The key is copied only for a role first seen.
                let entries = match by_role.get_mut(role.as_str()) {
                    Some(entries) => entries,
                    None => by_role.entry(role.clone()).or_default(),
                };
                if entries.last() != Some(&at) {
                    entries.push(at);
                }
            }
        }
        Table {
            rules,
            by_user,
            by_role,
            by_id,
        }
    }
}

/// Changed rules an overlay holds at most, beyond this share of the base, before the
/// two are built into one.
const OVERLAY_MIN: usize = 64;
const OVERLAY_SHARE: usize = 64;

impl DoorRules {
    /// Indexes the door's rules. Inactive rules are dropped: they never decide.
    pub fn build(rules: Vec<RuleView>) -> DoorRules {
        let mut inactive = HashSet::new();
        let active = Self::fold(rules, &mut inactive);
        DoorRules {
            base: Arc::new(Table::new(active, 0)),
            inactive,
            ..DoorRules::default()
        }
    }

    /// The active rules of `rules` ready to index; the inactive ones' ids go to
    /// `inactive`.
    fn fold(rules: Vec<RuleView>, inactive: &mut HashSet<Uuid>) -> Vec<IndexedRule> {
        let mut active = Vec::with_capacity(rules.len());
        for view in rules {
            if view.active {
                let times = Times::from_slots(&view.slots);
                active.push(IndexedRule { view, times });
            } else {
                inactive.insert(view.id);
            }
        }
        active
    }

    /// This door's index with the rules `changed` names taken out and `fresh` (their
    /// new state, and rules new to the door) added after the rest.
    pub fn patched(&self, changed: &HashSet<Uuid>, fresh: Vec<RuleView>) -> DoorRules {
        let mut inactive: HashSet<Uuid> = self.inactive.difference(changed).copied().collect();
        let mut replaced = self.replaced.clone();
        replaced.extend(
            changed
                .iter()
                .filter_map(|id| self.base.by_id.get(id).copied()),
        );
        let mut overlay: Vec<IndexedRule> = self
            .overlay
            .rules
            .iter()
            .filter(|rule| !changed.contains(&rule.view.id))
            .cloned()
            .collect();
        overlay.extend(Self::fold(fresh, &mut inactive));
        let base = &self.base.rules;
        if replaced.len() + overlay.len() > OVERLAY_MIN.max(base.len() / OVERLAY_SHARE) {
            let live = base
                .iter()
                .enumerate()
                .filter(|(at, _)| !replaced.contains(at))
                .map(|(_, rule)| rule.clone())
                .chain(overlay)
                .collect();
            return DoorRules {
                base: Arc::new(Table::new(live, 0)),
                replaced: HashSet::new(),
                overlay: Table::default(),
                inactive,
            };
        }
        DoorRules {
            base: Arc::clone(&self.base),
            replaced,
            overlay: Table::new(overlay, base.len()),
            inactive,
        }
    }

    /// Active rules indexed.
    pub fn len(&self) -> usize {
        self.base.rules.len() - self.replaced.len() + self.overlay.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inactive rules left out.
    pub fn inactive(&self) -> usize {
        self.inactive.len()
    }

    /// Whether the door has no rules at all, active or not.
    pub fn is_vacant(&self) -> bool {
        self.is_empty() && self.inactive.is_empty()
    }

    /// The indexed rule `id`, if it is active.
    pub fn get(&self, id: &Uuid) -> Option<&IndexedRule> {
        match self.overlay.by_id.get(id) {
            Some(&at) => self.overlay.rules.get(at - self.base.rules.len()),
            None => self
                .base
                .by_id
                .get(id)
                .filter(|at| !self.replaced.contains(at))
                .and_then(|&at| self.base.rules.get(at)),
        }
    }

    /// The rule at `at`; none for one whose state has changed since.
    pub(crate) fn rule(&self, at: usize) -> Option<&IndexedRule> {
        let base = &self.base.rules;
        if at < base.len() {
            if !self.replaced.is_empty() && self.replaced.contains(&at) {
                return None;
            }
            return base.get(at);
        }
        self.overlay.rules.get(at - base.len())
    }

    /// Positions of the rules naming the user directly, in order, with those of rules
    /// changed since, which [`DoorRules::rule`] does not return.
    pub(crate) fn for_user(&self, user: &Uuid) -> impl Iterator<Item = usize> + '_ {
        let overlay = self.has_overlay().then(|| self.overlay.by_user.get(user));
        positions(self.base.by_user.get(user), overlay.flatten())
    }

    /// Positions of the rules naming the role, as [`DoorRules::for_user`].
    pub(crate) fn for_role(&self, role: &str) -> impl Iterator<Item = usize> + '_ {
        let overlay = self.has_overlay().then(|| self.overlay.by_role.get(role));
        positions(self.base.by_role.get(role), overlay.flatten())
    }

    /// Whether rules have changed since the base was built; most doors' have not, and
    /// skip the overlay's lookups.
    fn has_overlay(&self) -> bool {
        !self.overlay.rules.is_empty()
    }
}

fn positions<'a>(
    base: Option<&'a Vec<usize>>,
    overlay: Option<&'a Vec<usize>>,
) -> impl Iterator<Item = usize> + 'a {
    let base = base.map_or(&[][..], Vec::as_slice);
    let overlay = overlay.map_or(&[][..], Vec::as_slice);
    base.iter().chain(overlay).copied()
}
