//! `GET /v1/scopes`: the scopes keys may be given (`serve --scopes`), each with the description
//! `serve --scope-description SCOPE=TEXT` gave it, for clients that offer them as choices.

use crate::api::access::Caller;
use crate::api::access::{shared_rule, AdminRoute};
use crate::api::state::AppState;
use crate::domain::tokens::Role;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The routes of this resource: each with its access rule and its handler, declared once.
pub const ROUTES: &[AdminRoute] = &[AdminRoute {
    rule: shared_rule("GET", "/v1/scopes", Role::Viewer, 200),
    handler: || get(list_scopes),
}];

/// Longest description a scope may be given.
const MAX_DESCRIPTION_CHARS: usize = 256;

/// Descriptions of configured scopes, by scope name. Added to the router as an extension so
/// the shared application state needs no field for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeDescriptions(BTreeMap<String, String>);

/// A `--scope-description` the service refuses, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDescriptionError(pub String);

impl std::fmt::Display for ScopeDescriptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ScopeDescriptions {
    /// Reads `SCOPE=TEXT` pairs; each scope must be one of `scopes`, described once.
    pub fn parse(pairs: &[String], scopes: &[String]) -> Result<Self, ScopeDescriptionError> {
        let mut descriptions = BTreeMap::new();
        for pair in pairs {
            let (scope, text) = pair.split_once('=').ok_or_else(|| {
                ScopeDescriptionError(format!("--scope-description {pair:?}: write SCOPE=TEXT, e.g. list_models=\"List the models\""))
            })?;
            let scope = scope.trim();
            if !scopes.iter().any(|known| known == scope) {
                return Err(ScopeDescriptionError(format!(
                    "--scope-description: {scope:?} is not one of the scopes ({})",
                    scopes.join(",")
                )));
            }
            let text = text.trim();
            if text.chars().count() > MAX_DESCRIPTION_CHARS || text.chars().any(char::is_control) {
                return Err(ScopeDescriptionError(format!(
                    "--scope-description {scope}: at most {MAX_DESCRIPTION_CHARS} characters, no control characters"
                )));
            }
            if descriptions
                .insert(scope.to_string(), text.to_string())
                .is_some()
            {
                return Err(ScopeDescriptionError(format!(
                    "--scope-description: {scope:?} is described twice"
                )));
            }
        }
        Ok(ScopeDescriptions(descriptions))
    }
}

/// One entry of `GET /v1/scopes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeInfo {
    pub name: String,
    /// `""` when the service was given none.
    pub description: String,
}

/// The answer of `GET /v1/scopes`, in the configured order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeCatalogue {
    pub scopes: Vec<ScopeInfo>,
}

pub async fn list_scopes(
    State(state): State<AppState>,
    descriptions: Option<Extension<Arc<ScopeDescriptions>>>,
    _caller: Caller,
) -> Json<ScopeCatalogue> {
    let described = descriptions.map(|Extension(found)| found);
    let scopes = state
        .allowed_scopes
        .iter()
        .map(|name| ScopeInfo {
            name: name.clone(),
            description: described
                .as_ref()
                .and_then(|found| found.0.get(name).cloned())
                .unwrap_or_default(),
        })
        .collect();
    Json(ScopeCatalogue { scopes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes() -> Vec<String> {
        vec!["list_models".into(), "submit_job".into()]
    }

    #[test]
    fn descriptions_name_configured_scopes_once() {
        let parsed =
            ScopeDescriptions::parse(&["list_models = List the models".into()], &scopes()).unwrap();
        assert_eq!(parsed.0["list_models"], "List the models");
        let cases = [
            ("no equals sign", vec!["list_models"], "SCOPE=TEXT"),
            ("unknown scope", vec!["other=x"], "not one of the scopes"),
            (
                "twice",
                vec!["submit_job=a", "submit_job=b"],
                "described twice",
            ),
            (
                "control character",
                vec!["submit_job=a\u{7}"],
                "no control characters",
            ),
        ];
        for (case, pairs, expected) in cases {
            let pairs: Vec<String> = pairs.into_iter().map(String::from).collect();
            let error = ScopeDescriptions::parse(&pairs, &scopes())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{case}: {error}");
        }
    }
}
