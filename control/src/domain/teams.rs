//! Teams as data: the accounts keys and tokens belong to. A team may be on a plan and carry its
//! own quotas; either way the team's quotas are shared by all its keys (docs/teams.md).

use crate::domain::keys::StoredKey;
use crate::domain::plans::{Plan, PlanLimits, Quotas};
use crate::domain::quota::QuotaUsage;
use crate::domain::tokens::StoredToken;
use chrono::{DateTime, Utc};

/// A team as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    pub name: String,
    /// The plan whose daily and monthly quotas the team shares, unless it sets its own.
    pub plan: Option<Plan>,
    /// The team's own quotas; each replaces the plan's.
    pub quotas: Quotas,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a PATCH of a team changes: each `Some` replaces the field (`Some(None)` clears it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeamChanges {
    pub plan: Option<Option<Plan>>,
    pub per_day: Option<Option<u64>>,
    pub per_month: Option<Option<u64>>,
}

impl TeamChanges {
    pub fn applied_to(&self, team: &Team) -> Team {
        let mut changed = team.clone();
        if let Some(plan) = &self.plan {
            changed.plan = plan.clone();
        }
        if let Some(per_day) = self.per_day {
            changed.quotas.per_day = per_day;
        }
        if let Some(per_month) = self.per_month {
            changed.quotas.per_month = per_month;
        }
        changed
    }
}

/// Keys a team's page lists at most; `key_count` says how many it has.
pub const LISTED_KEYS: usize = 100;

/// A team with what its page shows.
#[derive(Debug, Clone)]
pub struct TeamDetail {
    pub team: Team,
    /// The quotas its keys share (its own, else its plan's).
    pub shared_quotas: Quotas,
    /// Allowed requests of all its keys today and this month (UTC).
    pub usage: QuotaUsage,
    pub key_count: usize,
    /// Its first [`LISTED_KEYS`] live keys.
    pub keys: Vec<StoredKey>,
    pub tokens: Vec<StoredToken>,
}

/// The quotas a team's keys share: the team's own where it sets them, else its plan's.
pub fn team_quotas(own: Quotas, plan: Option<&PlanLimits>) -> Quotas {
    Quotas {
        per_day: own.per_day.or(plan.and_then(|plan| plan.per_day)),
        per_month: own.per_month.or(plan.and_then(|plan| plan.per_month)),
    }
}

impl Quotas {
    pub fn any(&self) -> bool {
        self.per_day.is_some() || self.per_month.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_quotas_replace_the_plans_field_by_field() {
        let plan = PlanLimits {
            per_day: Some(1_000),
            per_month: Some(20_000),
            ..PlanLimits::default()
        };
        let own = Quotas {
            per_day: Some(50),
            per_month: None,
        };
        assert_eq!(
            team_quotas(own, Some(&plan)),
            Quotas {
                per_day: Some(50),
                per_month: Some(20_000)
            }
        );
        assert_eq!(team_quotas(own, None), own);
        assert!(!team_quotas(Quotas::default(), None).any());
    }

    #[test]
    fn changes_replace_only_what_they_name() {
        let at = chrono::DateTime::<Utc>::UNIX_EPOCH;
        let team = Team {
            name: "blue".into(),
            plan: Some(Plan::Free),
            quotas: Quotas {
                per_day: Some(5),
                per_month: Some(9),
            },
            created_at: at,
            updated_at: at,
        };
        let changes = TeamChanges {
            plan: Some(None),
            per_day: Some(Some(7)),
            per_month: None,
        };
        let changed = changes.applied_to(&team);
        assert_eq!(changed.plan, None);
        assert_eq!(changed.quotas.per_day, Some(7));
        assert_eq!(changed.quotas.per_month, Some(9));
    }
}
