//! Plans, environments and the per-key limit overrides, and how they resolve into the
//! effective limits the filter enforces.

use keygate::contract::snapshot::Limits;
use serde::{Deserialize, Serialize};

/// A billing plan; each carries default request limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    #[default]
    Free,
    Pro,
    Business,
    Enterprise,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Business => "business",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(name: &str) -> Option<Plan> {
        [Plan::Free, Plan::Pro, Plan::Business, Plan::Enterprise]
            .into_iter()
            .find(|plan| plan.as_str() == name)
    }

    /// The plan's limits before any per-key override; `None` is unlimited.
    pub fn default_limits(self) -> Limits {
        let (per_minute, per_day) = match self {
            Plan::Free => (Some(60), Some(1_000)),
            Plan::Pro => (Some(300), Some(10_000)),
            Plan::Business => (Some(1_000), Some(100_000)),
            Plan::Enterprise => (None, None),
        };
        Limits {
            per_minute,
            per_hour: None,
            per_day,
            concurrent: None,
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

    /// The public prefix every secret of this environment starts with.
    pub fn secret_prefix(self) -> &'static str {
        match self {
            Environment::Live => "pk_live_",
            Environment::Test => "pk_test_",
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
pub fn effective_limits(plan: Plan, overrides: &LimitOverrides) -> Limits {
    let defaults = plan.default_limits();
    Limits {
        per_minute: overrides.per_minute.or(defaults.per_minute),
        per_hour: overrides.per_hour.or(defaults.per_hour),
        per_day: overrides.per_day.or(defaults.per_day),
        concurrent: overrides.concurrent.or(defaults.concurrent),
    }
}

/// The daily quota is the effective `per_day`; no plan has a monthly quota by default, so the
/// monthly one is the override or nothing.
pub fn effective_quotas(plan: Plan, overrides: &LimitOverrides) -> Quotas {
    Quotas {
        per_day: effective_limits(plan, overrides).per_day,
        per_month: overrides.per_month,
    }
}

/// [`effective_limits`] with the monthly quota, for the admin API.
pub fn effective_admin_limits(plan: Plan, overrides: &LimitOverrides) -> AdminLimits {
    AdminLimits {
        enforced_by_proxy: effective_limits(plan, overrides),
        per_month: overrides.per_month,
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

    #[test]
    fn plan_defaults_match_the_published_table() {
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
                effective_limits(plan, &LimitOverrides::default()),
                expected,
                "{plan:?}"
            );
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
            effective_limits(Plan::Pro, &overrides),
            limits(Some(5), None, Some(10_000), Some(2))
        );
        assert_eq!(
            effective_limits(Plan::Enterprise, &overrides),
            limits(Some(5), None, None, Some(2))
        );
    }

    #[test]
    fn quotas_are_the_effective_day_and_the_month_override() {
        let none = LimitOverrides::default();
        assert_eq!(
            effective_quotas(Plan::Free, &none),
            Quotas {
                per_day: Some(1_000),
                per_month: None
            }
        );
        assert_eq!(effective_quotas(Plan::Enterprise, &none), Quotas::default());
        let monthly = LimitOverrides {
            per_day: Some(5),
            per_month: Some(100),
            ..LimitOverrides::default()
        };
        assert_eq!(
            effective_quotas(Plan::Enterprise, &monthly),
            Quotas {
                per_day: Some(5),
                per_month: Some(100)
            }
        );
        let shown = serde_json::to_value(effective_admin_limits(Plan::Pro, &monthly)).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({"per_minute": 300, "per_hour": null, "per_day": 5,
                "concurrent": null, "per_month": 100})
        );
    }

    #[test]
    fn names_round_trip() {
        for plan in [Plan::Free, Plan::Pro, Plan::Business, Plan::Enterprise] {
            assert_eq!(Plan::parse(plan.as_str()), Some(plan));
        }
        assert_eq!(Plan::parse("gold"), None);
        assert_eq!(Environment::parse("test"), Some(Environment::Test));
        assert_eq!(Environment::parse("prod"), None);
        assert_eq!(Environment::Test.secret_prefix(), "pk_test_");
    }
}
