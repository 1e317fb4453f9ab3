//! What a change notification names, and which parts of a cached snapshot are stale.

use std::collections::HashSet;

use uuid::Uuid;

/// One committed change to a tenant's access data, as far as the snapshot cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Anything, or something this build does not know: reload the tenant.
    Everything,
    /// Tenant settings, properties or doors (their zones, flags, locks and status).
    Doors,
    Users,
    Memberships,
    /// Access codes and the doors they open.
    Codes,
    /// The rules of one door, or of every door.
    Rules(Option<Uuid>),
    /// One rule of a door: its row or its grants.
    Rule {
        door: Uuid,
        rule: Uuid,
    },
}

impl Change {
    /// Reads a notification's payload, `part:door:tenant`, into the tenant and the
    /// change; a rule's change names it after its door, `rules:door/rule:tenant`. A
    /// payload of another shape is a bare tenant id (what earlier releases sent) and
    /// reloads the whole tenant.
    pub fn parse(payload: &str) -> (&str, Self) {
        let mut fields = payload.splitn(3, ':');
        let (Some(part), Some(door), Some(tenant)) = (fields.next(), fields.next(), fields.next())
        else {
            return (payload, Self::Everything);
        };
        let change = match part {
            "doors" => Self::Doors,
            "users" => Self::Users,
            "memberships" => Self::Memberships,
            "codes" => Self::Codes,
            "rules" => match door.split_once('/') {
                Some((door, rule)) => match (Uuid::try_parse(door), Uuid::try_parse(rule)) {
                    (Ok(door), Ok(rule)) => Self::Rule { door, rule },
                    _ => Self::Rules(None),
                },
                None => Self::Rules(Uuid::try_parse(door).ok()),
            },
            "all" => Self::Everything,
            _ => return (payload, Self::Everything),
        };
        (tenant, change)
    }
}

/// Past this many doors with changed rules, every door's rules are read again: one
/// query either way, and a long list costs more to send than it saves.
const MAX_STALE_DOORS: usize = 256;
/// Past this many single changed rules, their doors are read again whole instead.
const MAX_STALE_RULES: usize = 1024;

/// The parts of a cached snapshot that changes have made stale since it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stale {
    pub doors: bool,
    pub users: bool,
    pub memberships: bool,
    pub codes: bool,
    pub rules: StaleRules,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StaleRules {
    #[default]
    Fresh,
    /// Doors whose rules are read again whole, and single rules (with the door each
    /// was on) read again by id, on doors not in `doors`.
    Parts {
        doors: HashSet<Uuid>,
        rules: StaleRuleIds,
    },
    All,
}

/// Single rules, each with the door it was on.
type StaleRuleIds = HashSet<(Uuid, Uuid)>;

impl StaleRules {
    /// The doors and single rules marked, unless every rule is.
    fn parts(&mut self) -> Option<(&mut HashSet<Uuid>, &mut StaleRuleIds)> {
        if *self == Self::Fresh {
            *self = Self::Parts {
                doors: HashSet::new(),
                rules: HashSet::new(),
            };
        }
        match self {
            Self::Parts { doors, rules } => Some((doors, rules)),
            Self::Fresh | Self::All => None,
        }
    }

    fn door(&mut self, door: Uuid) {
        let Some((doors, rules)) = self.parts() else {
            return;
        };
        doors.insert(door);
        rules.retain(|(on, _)| *on != door);
        if doors.len() > MAX_STALE_DOORS {
            *self = Self::All;
        }
    }

    fn rule(&mut self, door: Uuid, rule: Uuid) {
        let Some((doors, rules)) = self.parts() else {
            return;
        };
        if doors.contains(&door) {
            return;
        }
        rules.insert((door, rule));
        if rules.len() > MAX_STALE_RULES {
            let whole: Vec<Uuid> = rules.drain().map(|(door, _)| door).collect();
            for door in whole {
                self.door(door);
            }
        }
    }
}

impl Stale {
    /// Every part.
    pub fn all() -> Self {
        Self {
            doors: true,
            users: true,
            memberships: true,
            codes: true,
            rules: StaleRules::All,
        }
    }

    pub fn is_fresh(&self) -> bool {
        *self == Self::default()
    }

    /// Adds `change`; [`Change::Everything`] is not a part, the caller drops the
    /// snapshot instead.
    pub fn mark(&mut self, change: Change) {
        match change {
            Change::Everything => {}
            Change::Doors => self.doors = true,
            Change::Users => self.users = true,
            Change::Memberships => self.memberships = true,
            Change::Codes => self.codes = true,
            Change::Rules(None) => self.rules = StaleRules::All,
            Change::Rules(Some(door)) => self.rules.door(door),
            Change::Rule { door, rule } => self.rules.rule(door, rule),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_part_door_and_tenant() {
        let door = Uuid::from_u128(7);
        assert_eq!(Change::parse("doors::acme"), ("acme", Change::Doors));
        assert_eq!(
            Change::parse(&format!("rules:{door}:acme")),
            ("acme", Change::Rules(Some(door)))
        );
        assert_eq!(Change::parse("rules::acme"), ("acme", Change::Rules(None)));
        let rule = Uuid::from_u128(8);
        assert_eq!(
            Change::parse(&format!("rules:{door}/{rule}:acme")),
            ("acme", Change::Rule { door, rule })
        );
        assert_eq!(
            Change::parse(&format!("rules:{door}/x:acme")),
            ("acme", Change::Rules(None)),
            "a rule not understood rereads every rule"
        );
        // A tenant id may itself hold the separator.
        assert_eq!(Change::parse("users::a:b"), ("a:b", Change::Users));
        assert_eq!(Change::parse("codes::acme"), ("acme", Change::Codes));
        assert_eq!(
            Change::parse("memberships::acme"),
            ("acme", Change::Memberships)
        );
    }

    #[test]
    fn an_unknown_payload_reloads_the_tenant_it_names() {
        assert_eq!(Change::parse("acme"), ("acme", Change::Everything));
        assert_eq!(Change::parse("a:b"), ("a:b", Change::Everything));
        assert_eq!(
            Change::parse("gadgets::acme"),
            ("gadgets::acme", Change::Everything)
        );
        assert_eq!(Change::parse("all::acme"), ("acme", Change::Everything));
    }

    #[test]
    fn stale_parts_accumulate_and_many_doors_become_all() {
        let mut stale = Stale::default();
        assert!(stale.is_fresh());
        stale.mark(Change::Everything);
        assert!(stale.is_fresh(), "everything is not a part");
        stale.mark(Change::Doors);
        stale.mark(Change::Rules(Some(Uuid::from_u128(1))));
        stale.mark(Change::Rules(Some(Uuid::from_u128(1))));
        assert!(stale.doors && !stale.users && !stale.memberships && !stale.codes);
        assert_eq!(
            stale.rules,
            StaleRules::Parts {
                doors: HashSet::from([Uuid::from_u128(1)]),
                rules: HashSet::new()
            }
        );
        for door in 0..=MAX_STALE_DOORS as u128 {
            stale.mark(Change::Rules(Some(Uuid::from_u128(door + 100))));
        }
        assert_eq!(stale.rules, StaleRules::All);
        stale.mark(Change::Rules(Some(Uuid::from_u128(1))));
        assert_eq!(stale.rules, StaleRules::All, "all stays all");
    }

    #[test]
    fn single_rules_are_reread_unless_their_door_is_and_many_become_their_doors() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut stale = Stale::default();
        stale.mark(Change::Rule {
            door: a,
            rule: Uuid::from_u128(10),
        });
        stale.mark(Change::Rule {
            door: b,
            rule: Uuid::from_u128(20),
        });
        stale.mark(Change::Rule {
            door: b,
            rule: Uuid::from_u128(20),
        });
        assert_eq!(
            stale.rules,
            StaleRules::Parts {
                doors: HashSet::new(),
                rules: HashSet::from([(a, Uuid::from_u128(10)), (b, Uuid::from_u128(20))]),
            }
        );
        // Door b read whole covers its rule, and any rule of it after.
        stale.mark(Change::Rules(Some(b)));
        stale.mark(Change::Rule {
            door: b,
            rule: Uuid::from_u128(21),
        });
        assert_eq!(
            stale.rules,
            StaleRules::Parts {
                doors: HashSet::from([b]),
                rules: HashSet::from([(a, Uuid::from_u128(10))]),
            }
        );
        for rule in 0..MAX_STALE_RULES as u128 {
            stale.mark(Change::Rule {
                door: a,
                rule: Uuid::from_u128(1000 + rule),
            });
        }
        assert_eq!(
            stale.rules,
            StaleRules::Parts {
                doors: HashSet::from([a, b]),
                rules: HashSet::new(),
            },
            "past the bound, the doors are read whole"
        );
    }
}
