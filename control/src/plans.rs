//! Plans, environments and the per-key limit overrides, and how they resolve into the
//! effective limits the filter enforces.

use keygate::snapshot::Limits;
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
}

impl LimitOverrides {
    /// The overrides by field name, for validation messages and storage.
    pub fn fields(&self) -> [(&'static str, Option<u64>); 4] {
        [
            ("per_minute", self.per_minute),
            ("per_hour", self.per_hour),
            ("per_day", self.per_day),
            ("concurrent", self.concurrent),
        ]
    }
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
