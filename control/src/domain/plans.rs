//! Plans, environments and the per-key limit overrides, and how they resolve into the
//! effective limits the filter enforces. Plans are data (`store/plans.rs`); the four below are
//! seeded on every database.

use crate::domain::patch::present_or_null;
use keygate_contract::key_format::KeyEnvironment;
use keygate_contract::snapshot::Limits;
use keygate_contract::FieldError;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The name of a billing plan, as keys refer to it. Whether a plan of this name exists is the
/// store's to say (`store::plans`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plan(Cow<'static, str>);

/// The seeded plans by name, spelled as the variants of the enum plans once were.
#[allow(non_upper_case_globals)]
impl Plan {
    pub const Free: Plan = Plan(Cow::Borrowed("free"));
    pub const Pro: Plan = Plan(Cow::Borrowed("pro"));
    pub const Business: Plan = Plan(Cow::Borrowed("business"));
    pub const Enterprise: Plan = Plan(Cow::Borrowed("enterprise"));
}

impl Default for Plan {
    fn default() -> Self {
        Plan::Free
    }
}

impl Plan {
    pub fn new(name: impl Into<String>) -> Plan {
        Plan(Cow::Owned(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest plan name.
pub const MAX_PLAN_NAME_CHARS: usize = 64;
/// Longest plan description.
pub const MAX_PLAN_DESCRIPTION_CHARS: usize = 256;

/// A plan's default limits; `None` is unlimited. `per_month` is a quota the control service
/// enforces; the others the filter enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanLimits {
    pub per_minute: Option<u64>,
    pub per_hour: Option<u64>,
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
    pub concurrent: Option<u64>,
}

impl PlanLimits {
    /// The limits by field name, for validation messages, storage and the audit log.
    pub fn fields(&self) -> [(&'static str, Option<u64>); 5] {
        [
            ("per_minute", self.per_minute),
            ("per_hour", self.per_hour),
            ("per_day", self.per_day),
            ("per_month", self.per_month),
            ("concurrent", self.concurrent),
        ]
    }
}

/// A plan as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDefinition {
    pub name: Plan,
    pub description: String,
    #[serde(flatten)]
    pub limits: PlanLimits,
}

/// The plans every new database starts with (and older ones get on open, if missing).
pub fn seeded_plans() -> [PlanDefinition; 4] {
    let plan = |name: Plan, description: &str, per_minute, per_day| PlanDefinition {
        name,
        description: description.to_string(),
        limits: PlanLimits {
            per_minute,
            per_day,
            ..PlanLimits::default()
        },
    };
    [
        plan(
            Plan::Free,
            "60 requests a minute, 1,000 a day",
            Some(60),
            Some(1_000),
        ),
        plan(
            Plan::Pro,
            "300 requests a minute, 10,000 a day",
            Some(300),
            Some(10_000),
        ),
        plan(
            Plan::Business,
            "1,000 requests a minute, 100,000 a day",
            Some(1_000),
            Some(100_000),
        ),
        plan(Plan::Enterprise, "unlimited", None, None),
    ]
}

/// The validated changes of a plan PATCH; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanChanges {
    pub description: Option<String>,
    pub per_minute: Option<Option<u64>>,
    pub per_hour: Option<Option<u64>>,
    pub per_day: Option<Option<u64>>,
    pub per_month: Option<Option<u64>>,
    pub concurrent: Option<Option<u64>>,
}

impl PlanChanges {
    /// `plan` with these changes laid over it.
    pub fn apply(&self, plan: &PlanDefinition) -> PlanDefinition {
        let limits = &plan.limits;
        PlanDefinition {
            name: plan.name.clone(),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| plan.description.clone()),
            limits: PlanLimits {
                per_minute: self.per_minute.unwrap_or(limits.per_minute),
                per_hour: self.per_hour.unwrap_or(limits.per_hour),
                per_day: self.per_day.unwrap_or(limits.per_day),
                per_month: self.per_month.unwrap_or(limits.per_month),
                concurrent: self.concurrent.unwrap_or(limits.concurrent),
            },
        }
    }
}

/// A plan name: 1 to 64 of lowercase ASCII letters, digits and `-`.
pub fn plan_name(field: &str, name: &str) -> Result<Plan, FieldError> {
    let valid_chars = name
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    if name.is_empty() || name.len() > MAX_PLAN_NAME_CHARS || !valid_chars {
        return Err(FieldError::new(
            field,
            format!(
                "must be 1 to {MAX_PLAN_NAME_CHARS} lowercase letters, digits or '-', got {name:?}"
            ),
        ));
    }
    Ok(Plan::new(name))
}

/// The `limits` object of a PATCH: a number replaces that override, `null` removes it (the
/// plan's value applies again), an absent field keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPatch {
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_hour: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_day: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub concurrent: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub per_month: Option<Option<u64>>,
}

impl LimitPatch {
    /// Removes every override (`"limits": null`).
    pub const CLEAR_ALL: LimitPatch = LimitPatch {
        per_minute: Some(None),
        per_hour: Some(None),
        per_day: Some(None),
        concurrent: Some(None),
        per_month: Some(None),
    };

    /// The changes by field name, for validation messages.
    pub fn fields(&self) -> [(&'static str, Option<Option<u64>>); 5] {
        [
            ("per_minute", self.per_minute),
            ("per_hour", self.per_hour),
            ("per_day", self.per_day),
            ("concurrent", self.concurrent),
            ("per_month", self.per_month),
        ]
    }

    /// `overrides` with this patch laid over them.
    pub fn applied_to(&self, overrides: LimitOverrides) -> LimitOverrides {
        LimitOverrides {
            per_minute: self.per_minute.unwrap_or(overrides.per_minute),
            per_hour: self.per_hour.unwrap_or(overrides.per_hour),
            per_day: self.per_day.unwrap_or(overrides.per_day),
            concurrent: self.concurrent.unwrap_or(overrides.concurrent),
            per_month: self.per_month.unwrap_or(overrides.per_month),
        }
    }
}

/// Whether a key is for production traffic or the sandbox; decides the secret's prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Live,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    pub fn parse(name: &str) -> Option<Environment> {
        match name {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }

    /// The public prefix every secret of this environment starts with (the contract's key
    /// format).
    pub fn secret_prefix(self) -> &'static str {
        self.key_environment().prefix()
    }

    pub fn key_environment(self) -> KeyEnvironment {
        match self {
            Environment::Live => KeyEnvironment::Live,
            Environment::Test => KeyEnvironment::Test,
        }
    }
}

/// Per-key limit overrides as the admin gave them; `None` keeps the plan's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default)]
    pub per_minute: Option<u64>,
    #[serde(default)]
    pub per_hour: Option<u64>,
    #[serde(default)]
    pub per_day: Option<u64>,
    #[serde(default)]
    pub concurrent: Option<u64>,
    /// A monthly quota, enforced fleet-wide by the control service (not by the filter).
    #[serde(default)]
    pub per_month: Option<u64>,
}

impl LimitOverrides {
    /// The overrides by field name, for validation messages and storage.
    pub fn fields(&self) -> [(&'static str, Option<u64>); 5] {
        [
            ("per_minute", self.per_minute),
            ("per_hour", self.per_hour),
            ("per_day", self.per_day),
            ("concurrent", self.concurrent),
            ("per_month", self.per_month),
        ]
    }
}

/// The limits an admin sees: what the filter enforces plus the monthly quota, which only the
/// control service enforces (it is not part of the snapshot's `Limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminLimits {
    #[serde(flatten)]
    pub enforced_by_proxy: Limits,
    pub per_month: Option<u64>,
}

/// The usage quotas the control service enforces across the fleet; `None` is no quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
}

/// The plan's defaults with each given override replacing its field.
pub fn effective_limits(plan: &PlanLimits, overrides: &LimitOverrides) -> Limits {
    Limits {
        per_minute: overrides.per_minute.or(plan.per_minute),
        per_hour: overrides.per_hour.or(plan.per_hour),
        per_day: overrides.per_day.or(plan.per_day),
        concurrent: overrides.concurrent.or(plan.concurrent),
    }
}

/// The daily quota is the effective `per_day`, the monthly one the effective `per_month`.
pub fn effective_quotas(plan: &PlanLimits, overrides: &LimitOverrides) -> Quotas {
    Quotas {
        per_day: effective_limits(plan, overrides).per_day,
        per_month: overrides.per_month.or(plan.per_month),
    }
}

/// [`effective_limits`] with the monthly quota, for the admin API.
pub fn effective_admin_limits(plan: &PlanLimits, overrides: &LimitOverrides) -> AdminLimits {
    AdminLimits {
        enforced_by_proxy: effective_limits(plan, overrides),
        per_month: overrides.per_month.or(plan.per_month),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(m: Option<u64>, h: Option<u64>, d: Option<u64>, c: Option<u64>) -> Limits {
        Limits {
            per_minute: m,
            per_hour: h,
            per_day: d,
            concurrent: c,
        }
    }

    fn seeded(plan: Plan) -> PlanLimits {
        seeded_plans()
            .into_iter()
            .find(|seed| seed.name == plan)
            .unwrap()
            .limits
    }

    #[test]
    fn seeded_plans_match_the_published_table() {
        let cases = [
            (Plan::Free, limits(Some(60), None, Some(1_000), None)),
            (Plan::Pro, limits(Some(300), None, Some(10_000), None)),
            (
                Plan::Business,
                limits(Some(1_000), None, Some(100_000), None),
            ),
            (Plan::Enterprise, limits(None, None, None, None)),
        ];
        for (plan, expected) in cases {
            assert_eq!(
                effective_limits(&seeded(plan.clone()), &LimitOverrides::default()),
                expected,
                "{plan:?}"
            );
            assert_eq!(seeded(plan).per_month, None);
        }
    }

    #[test]
    fn overrides_replace_their_field_only() {
        let overrides = LimitOverrides {
            per_minute: Some(5),
            concurrent: Some(2),
            ..LimitOverrides::default()
        };
        assert_eq!(
            effective_limits(&seeded(Plan::Pro), &overrides),
            limits(Some(5), None, Some(10_000), Some(2))
        );
        assert_eq!(
            effective_limits(&seeded(Plan::Enterprise), &overrides),
            limits(Some(5), None, None, Some(2))
        );
    }

    #[test]
    fn quotas_are_the_effective_day_and_month() {
        let none = LimitOverrides::default();
        assert_eq!(
            effective_quotas(&seeded(Plan::Free), &none),
            Quotas {
                per_day: Some(1_000),
                per_month: None
            }
        );
        assert_eq!(
            effective_quotas(&seeded(Plan::Enterprise), &none),
            Quotas::default()
        );
        let monthly = LimitOverrides {
            per_day: Some(5),
            per_month: Some(100),
            ..LimitOverrides::default()
        };
        assert_eq!(
            effective_quotas(&seeded(Plan::Enterprise), &monthly),
            Quotas {
                per_day: Some(5),
                per_month: Some(100)
            }
        );
        let plan_monthly = PlanLimits {
            per_month: Some(7),
            ..PlanLimits::default()
        };
        assert_eq!(effective_quotas(&plan_monthly, &none).per_month, Some(7));
        let shown =
            serde_json::to_value(effective_admin_limits(&seeded(Plan::Pro), &monthly)).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"per_minute": 300, "per_hour": null, "per_day": 5,
                "concurrent": null, "per_month": 100})
        );
    }

    #[test]
    fn plan_names_are_slugs() {
        for good in ["free", "gold-2", "a", &"x".repeat(64)] {
            assert_eq!(plan_name("name", good).unwrap().as_str(), good);
        }
        for bad in ["", "Gold", "gold plan", "gold_2", "ü", &"x".repeat(65)] {
            let error = plan_name("name", bad).unwrap_err();
            assert!(error.to_string().starts_with("name:"), "{bad:?}: {error}");
        }
        assert_eq!(Plan::default(), Plan::Free);
        assert_eq!(
            serde_json::to_value(Plan::new("gold")).unwrap(),
            serde_json::json!("gold")
        );
    }

    #[test]
    fn environment_names_round_trip() {
        assert_eq!(Environment::parse("test"), Some(Environment::Test));
        assert_eq!(Environment::parse("prod"), None);
        assert_eq!(Environment::Test.secret_prefix(), "pk_test_");
    }
}
