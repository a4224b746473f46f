//! Admin request bodies as sent, and their validation into settings the store can keep.
//! Every error names the field it is about, e.g. `allowed_ips[1]: invalid IP or CIDR "x"`.
//!
//! The rules about what a key may hold (lengths, characters, scopes, allowlists, limits) are the
//! filter's own, from `keygate_contract::fields`: the control service refuses exactly what the
//! filter would refuse, plus what only matters for people reading listings (invisible
//! formatting characters in names and teams, duplicate networks).

use crate::domain::clock;
use crate::domain::keys::{KeyChanges, KeySettings};
use crate::domain::patch::{not_null, present_or_null};
use crate::domain::plans::{Environment, LimitOverrides, LimitPatch, Plan};
use crate::domain::tokens::{Role, TokenSettings};
use chrono::{DateTime, Utc};
use keygate_contract::fields::{self, Duplicates};
use serde::Deserialize;

pub use keygate_contract::FieldError;

/// Rotation grace is capped at 30 days.
pub const MAX_GRACE_SECONDS: u64 = 30 * 24 * 60 * 60;

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub team: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub plan: Plan,
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
}

/// Body of `PATCH /v1/keys/{id}`: a merge patch. Absent fields stay as they are; `null` clears a
/// field that can be empty (`expires_at`, `limits` and each override inside it) and is refused
/// for the others. Every field is read as `Option<Option<_>>` so an explicit `null`
/// (`Some(None)`) is told apart from an absent field (`None`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    #[serde(default, deserialize_with = "present_or_null")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub team: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub scopes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub allowed_ips: Option<Option<Vec<String>>>,
    /// `Some(None)` clears the expiry.
    #[serde(default, deserialize_with = "present_or_null")]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub plan: Option<Option<Plan>>,
    /// `Some(None)` removes every override; an object changes only the overrides it names.
    #[serde(default, deserialize_with = "present_or_null")]
    pub limits: Option<Option<LimitPatch>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub active: Option<Option<bool>>,
}

/// Body of `POST /v1/keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    #[serde(default)]
    pub grace_seconds: u64,
}

/// What a request is checked against: the configured scopes and the current instant.
pub struct Rules<'a> {
    pub allowed_scopes: &'a [String],
    pub now: DateTime<Utc>,
}

impl Rules<'_> {
    pub fn create(&self, request: CreateKeyRequest) -> Result<KeySettings, FieldError> {
        Ok(KeySettings {
            name: name(request.name)?,
            environment: request.environment,
            team: team(request.team)?,
            scopes: self.scopes(request.scopes)?,
            allowed_ips: allowed_ips(request.allowed_ips)?,
            expires_at: request
                .expires_at
                .map(|text| self.expires_at(&text))
                .transpose()?,
            plan: request.plan,
            limits: limits(request.limits.unwrap_or_default())?,
        })
    }

    pub fn update(&self, request: UpdateKeyRequest) -> Result<KeyChanges, FieldError> {
        Ok(KeyChanges {
            name: not_null("name", None, request.name)?
                .map(name)
                .transpose()?,
            team: not_null("team", Some("send \"\" for no team"), request.team)?
                .map(team)
                .transpose()?,
            scopes: not_null("scopes", Some("send [] for full access"), request.scopes)?
                .map(|s| self.scopes(s))
                .transpose()?,
            allowed_ips: not_null(
                "allowed_ips",
                Some("send [] to allow any address"),
                request.allowed_ips,
            )?
            .map(allowed_ips)
            .transpose()?,
            expires_at: request
                .expires_at
                .map(|value| value.map(|text| self.expires_at(&text)).transpose())
                .transpose()?,
            plan: not_null(
                "plan",
                Some("send the name of a plan (GET /v1/plans)"),
                request.plan,
            )?,
            limits: match request.limits {
                None => LimitPatch::default(),
                Some(None) => LimitPatch::CLEAR_ALL,
                Some(Some(patch)) => limit_patch(patch)?,
            },
            active: not_null("active", Some("send true or false"), request.active)?,
        })
    }

    fn scopes(&self, scopes: Vec<String>) -> Result<Vec<String>, FieldError> {
        fields::scopes("scopes", &scopes)?;
        for (index, scope) in scopes.iter().enumerate() {
            let field = format!("scopes[{index}]");
            if !self.allowed_scopes.contains(scope) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "unknown scope {scope:?}; allowed: {}",
                        self.allowed_scopes.join(", ")
                    ),
                ));
            }
            if scopes[..index].contains(scope) {
                return Err(FieldError::new(field, format!("duplicate scope {scope:?}")));
            }
        }
        Ok(scopes)
    }

    fn expires_at(&self, text: &str) -> Result<DateTime<Utc>, FieldError> {
        expires_at(text, self.now)
    }
}

/// An `expires_at`: an RFC 3339 instant after `now`.
pub fn expires_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, FieldError> {
    let instant = clock::parse(text).ok_or_else(|| {
        FieldError::new(
            "expires_at",
            format!("{text:?} is not an RFC 3339 instant such as 2030-01-01T00:00:00Z"),
        )
    })?;
    if instant <= now {
        return Err(FieldError::new("expires_at", "must be in the future"));
    }
    Ok(instant)
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl Rules<'_> {
    /// A token's settings; an empty `team` means no team.
    pub fn create_token(&self, request: CreateTokenRequest) -> Result<TokenSettings, FieldError> {
        Ok(TokenSettings {
            name: name(request.name)?,
            role: request.role,
            team: request
                .team
                .map(team)
                .transpose()?
                .filter(|team| !team.is_empty()),
            expires_at: request
                .expires_at
                .map(|text| self.expires_at(&text))
                .transpose()?,
        })
    }
}

pub fn grace_seconds(request: &RotateKeyRequest) -> Result<u64, FieldError> {
    if request.grace_seconds > MAX_GRACE_SECONDS {
        return Err(FieldError::new(
            "grace_seconds",
            format!("must be at most {MAX_GRACE_SECONDS} (30 days)"),
        ));
    }
    Ok(request.grace_seconds)
}

pub fn name(name: String) -> Result<String, FieldError> {
    if name.trim().is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    fields::display_label("name", &name)?;
    Ok(name)
}

pub fn team(team: String) -> Result<String, FieldError> {
    fields::display_label("team", &team)?;
    Ok(team)
}

/// Names end up in logs and terminals (the CLI's tables), where a NUL, newline or escape
/// sequence would do harm; JSON lets a body carry them as `\u0000`.
pub fn printable(field: &str, text: String) -> Result<String, FieldError> {
    if text.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(text)
}

/// The allowlist as the filter will match it: canonical networks (`10.0.0.1/8` is stored as
/// `10.0.0.0/8`, `::ffff:10.0.0.1` as `10.0.0.1`), none twice.
fn allowed_ips(entries: Vec<String>) -> Result<Vec<String>, FieldError> {
    let nets = fields::allowlist("allowed_ips", &entries, Duplicates::Refuse)?;
    Ok(nets.iter().map(fields::allowlist_text).collect())
}

fn limit_patch(patch: LimitPatch) -> Result<LimitPatch, FieldError> {
    for (field, value) in patch.fields() {
        fields::limit(&format!("limits.{field}"), value.flatten())?;
    }
    Ok(patch)
}

fn limits(overrides: LimitOverrides) -> Result<LimitOverrides, FieldError> {
    for (field, value) in overrides.fields() {
        fields::limit(&format!("limits.{field}"), value)?;
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_with(scopes: &[String]) -> Rules<'_> {
        Rules {
            allowed_scopes: scopes,
            now: clock::parse("2025-01-01T00:00:00Z").unwrap(),
        }
    }

    fn scopes() -> Vec<String> {
        vec!["submit_job".into(), "check_status".into()]
    }

    fn create(json: &str) -> Result<KeySettings, FieldError> {
        let allowed = scopes();
        rules_with(&allowed).create(serde_json::from_str(json).unwrap())
    }

    fn field_of(json: &str) -> String {
        create(json).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_minimal_key_with_defaults() {
        let settings = create(r#"{"name":"ci"}"#).unwrap();
        assert_eq!(settings.environment, Environment::Live);
        assert_eq!(settings.plan, Plan::Free);
        assert!(settings.scopes.is_empty() && settings.allowed_ips.is_empty());
        assert_eq!(settings.expires_at, None);
        assert_eq!(settings.limits, LimitOverrides::default());
    }

    #[test]
    fn normalises_expiry_to_utc() {
        let settings = create(r#"{"name":"a","expires_at":"2030-06-01T12:00:00+02:00"}"#).unwrap();
        assert_eq!(
            settings.expires_at.map(clock::format).as_deref(),
            Some("2030-06-01T10:00:00Z")
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"name":""}"#, "name: must not be empty"),
            (r#"{"name":"   "}"#, "name: must not be empty"),
            (
                &format!(r#"{{"name":"{}"}}"#, "🔑".repeat(129)),
                "name: must be at most 128 characters",
            ),
            (
                &format!(r#"{{"name":"a","team":"{}"}}"#, "t".repeat(129)),
                "team: must be at most",
            ),
            (
                r#"{"name":"a\u0000b"}"#,
                "name: must not contain control characters",
            ),
            (
                r#"{"name":"a","team":"x\u001b[2J"}"#,
                "team: must not contain control characters",
            ),
            (
                r#"{"name":"a","scopes":["submit_job","nope"]}"#,
                "scopes[1]: unknown scope \"nope\"",
            ),
            (
                r#"{"name":"a","scopes":["submit_job","submit_job"]}"#,
                "scopes[1]: duplicate",
            ),
            (
                r#"{"name":"a","allowed_ips":["10.0.0.1","10.0.0.0/33"]}"#,
                "allowed_ips[1]: invalid IP or CIDR \"10.0.0.0/33\"",
            ),
            (
                r#"{"name":"a","allowed_ips":["example.com"]}"#,
                "allowed_ips[0]: invalid IP or CIDR",
            ),
            (
                r#"{"name":"a","expires_at":"next week"}"#,
                "expires_at: \"next week\" is not an RFC 3339",
            ),
            (
                r#"{"name":"a","expires_at":"2020-01-01T00:00:00Z"}"#,
                "expires_at: must be in the future",
            ),
            (
                r#"{"name":"a","limits":{"per_minute":0}}"#,
                "limits.per_minute: must be a positive integer",
            ),
            (
                r#"{"name":"a","limits":{"concurrent":18446744073709551615}}"#,
                "limits.concurrent: must be at most",
            ),
        ];
        for (json, expected) in cases {
            let message = field_of(json);
            assert!(message.starts_with(expected), "{json} gave {message}");
        }
    }

    #[test]
    fn accepts_v4_v6_addresses_and_networks_in_canonical_form() {
        let settings = create(
            r#"{"name":"a","allowed_ips":["10.0.0.1","10.9.0.1/16","::1","2001:db8::1/32","::ffff:127.0.0.1"]}"#,
        )
        .unwrap();
        assert_eq!(
            settings.allowed_ips,
            [
                "10.0.0.1",
                "10.9.0.0/16",
                "::1",
                "2001:db8::/32",
                "127.0.0.1"
            ]
        );
    }

    #[test]
    fn long_unicode_names_are_fine_and_invisible_formatting_is_not() {
        let name = "🔑".repeat(128);
        assert_eq!(
            create(&format!(r#"{{"name":"{name}"}}"#)).unwrap().name,
            name
        );
        let team = "東".repeat(90);
        assert!(create(&format!(r#"{{"name":"a","team":"{team}"}}"#)).is_ok());
        for (json, expected) in [
            (
                r#"{"name":"admin\u202Etxt"}"#,
                "name: must not contain invisible",
            ),
            (
                r#"{"name":"a","team":"ops\u200B"}"#,
                "team: must not contain invisible",
            ),
            (r#"{"name":"a\u2066b"}"#, "name: must not contain invisible"),
            (
                r#"{"name":"a","allowed_ips":["10.0.0.1/8","10.0.0.0/8"]}"#,
                "allowed_ips[1]: \"10.0.0.0/8\" is the same network",
            ),
        ] {
            let message = field_of(json);
            assert!(message.starts_with(expected), "{json} gave {message}");
        }
    }

    fn update(json: &str) -> Result<KeyChanges, FieldError> {
        let allowed = scopes();
        rules_with(&allowed).update(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn update_tells_null_from_absent() {
        assert!(update("{}").unwrap().is_empty());
        let cleared = update(r#"{"expires_at":null,"limits":null}"#).unwrap();
        assert_eq!(cleared.expires_at, Some(None));
        assert_eq!(cleared.limits, LimitPatch::CLEAR_ALL);
        let error = update(r#"{"allowed_ips":["300.0.0.1"]}"#).unwrap_err();
        assert_eq!(error.field, "allowed_ips[0]");
    }

    #[test]
    fn update_limits_change_only_the_overrides_they_name() {
        let current = LimitOverrides {
            per_minute: Some(5),
            per_day: Some(50),
            per_month: Some(900),
            ..LimitOverrides::default()
        };
        let cases = [
            (r#"{"per_minute":null}"#, (None, Some(50), Some(900))),
            (r#"{"per_day":7}"#, (Some(5), Some(7), Some(900))),
            (
                r#"{"per_minute":null,"per_month":1}"#,
                (None, Some(50), Some(1)),
            ),
            ("{}", (Some(5), Some(50), Some(900))),
        ];
        for (limits, (per_minute, per_day, per_month)) in cases {
            let changes = update(&format!(r#"{{"limits":{limits}}}"#)).unwrap();
            let patched = changes.limits.applied_to(current);
            assert_eq!(
                (patched.per_minute, patched.per_day, patched.per_month),
                (per_minute, per_day, per_month),
                "{limits}"
            );
        }
        let all = update(r#"{"limits":null}"#).unwrap().limits;
        assert_eq!(all.applied_to(current), LimitOverrides::default());
        let error = update(r#"{"limits":{"per_hour":null,"per_day":0}}"#).unwrap_err();
        assert_eq!(error.field, "limits.per_day");
    }

    #[test]
    fn update_refuses_null_for_fields_that_cannot_be_empty() {
        for field in ["name", "team", "scopes", "allowed_ips", "plan", "active"] {
            let error = update(&format!(r#"{{"{field}":null}}"#)).unwrap_err();
            assert_eq!(error.field, field);
            assert!(error.to_string().contains("must not be null"), "{error}");
        }
    }

    #[test]
    fn unknown_fields_and_environment_changes_are_rejected() {
        assert!(serde_json::from_str::<CreateKeyRequest>(r#"{"name":"a","colour":1}"#).is_err());
        assert!(serde_json::from_str::<UpdateKeyRequest>(r#"{"environment":"test"}"#).is_err());
    }

    #[test]
    fn grace_is_capped_at_thirty_days() {
        assert_eq!(
            grace_seconds(&RotateKeyRequest { grace_seconds: 60 }),
            Ok(60)
        );
        let error = grace_seconds(&RotateKeyRequest {
            grace_seconds: MAX_GRACE_SECONDS + 1,
        });
        assert_eq!(error.unwrap_err().field, "grace_seconds");
    }
}
