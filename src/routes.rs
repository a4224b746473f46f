//! Route rules: which scope a request (method + path) requires. First match wins.

/// How a rule matches the request path (query string already removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatcher {
    Exact(String),
    Prefix(String),
    /// Literal segments and `{param}` segments, each param matching one non-empty segment.
    Template(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param,
}

/// One rule from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// Upper-case methods; empty matches any method.
    pub methods: Vec<String>,
    pub path: PathMatcher,
    /// Scope the key needs; `None` means any valid key.
    pub scope: Option<String>,
}

/// The ordered rules plus the scope for requests no rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    default_scope: Option<String>,
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{path:?} must be a plain path without query, fragment or spaces"
        ));
    }
    Ok(())
}

/// A trailing slash does not change which rule applies: `/v1/jobs/` must need the same scope
/// as `/v1/jobs`, or a client could dodge a scope check that the upstream would not notice.
fn trim_trailing_slash(path: &str) -> &str {
    if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    }
}

impl PathMatcher {
    pub fn exact(path: &str) -> Result<PathMatcher, String> {
        check_path(path)?;
        Ok(PathMatcher::Exact(trim_trailing_slash(path).to_string()))
    }

    pub fn prefix(path: &str) -> Result<PathMatcher, String> {
        check_path(path)?;
        Ok(PathMatcher::Prefix(path.to_string()))
    }

    pub fn template(path: &str) -> Result<PathMatcher, String> {
        check_path(path)?;
        let mut segments = Vec::new();
        for segment in trim_trailing_slash(path)[1..].split('/') {
            if segment.starts_with('{') && segment.ends_with('}') && segment.len() > 2 {
                let name = &segment[1..segment.len() - 1];
                if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!(
                        "{path:?}: parameter name {name:?} must be letters, digits or _"
                    ));
                }
                segments.push(Segment::Param);
            } else if segment.contains(['{', '}']) {
                return Err(format!(
                    "{path:?}: unknown parameter syntax in segment {segment:?}"
                ));
            } else {
                segments.push(Segment::Literal(segment.to_string()));
            }
        }
        Ok(PathMatcher::Template(segments))
    }

    /// Whether `path` (no query string) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(exact) => trim_trailing_slash(path) == exact,
            PathMatcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatcher::Template(segments) => {
                let trimmed = trim_trailing_slash(path);
                let Some(rest) = trimmed.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for segment in segments {
                    match (segment, parts.next()) {
                        (Segment::Literal(literal), Some(part)) if part == literal => {}
                        (Segment::Param, Some(part)) if !part.is_empty() => {}
                        _ => return false,
                    }
                }
                parts.next().is_none()
            }
        }
    }
}

impl RouteRule {
    fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.path.matches(path)
    }
}

impl RouteTable {
    pub fn new(rules: Vec<RouteRule>, default_scope: Option<String>) -> RouteTable {
        RouteTable {
            rules,
            default_scope,
        }
    }

    /// The scope a request needs: the first matching rule's, else the default.
    pub fn required_scope(&self, method: &str, path: &str) -> Option<&str> {
        let path = path_without_query(path);
        match self.rules.iter().find(|rule| rule.matches(method, path)) {
            Some(rule) => rule.scope.as_deref(),
            None => self.default_scope.as_deref(),
        }
    }
}

/// `:path` without its query string or fragment.
pub fn path_without_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(end) => &path[..end],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[&str], path: PathMatcher, scope: &str) -> RouteRule {
        RouteRule {
            methods: methods.iter().map(|m| m.to_string()).collect(),
            path,
            scope: Some(scope.to_string()),
        }
    }

    fn shipped_table() -> RouteTable {
        RouteTable::new(
            vec![
                rule(
                    &["POST"],
                    PathMatcher::exact("/v1/jobs").unwrap(),
                    "submit_job",
                ),
                rule(
                    &["GET"],
                    PathMatcher::template("/v1/jobs/{id}").unwrap(),
                    "check_status",
                ),
                rule(
                    &["GET"],
                    PathMatcher::exact("/v1/models").unwrap(),
                    "list_models",
                ),
            ],
            None,
        )
    }

    #[test]
    fn shipped_routes_map_to_documented_scopes() {
        let table = shipped_table();
        let cases = [
            ("POST", "/v1/jobs", Some("submit_job")),
            ("POST", "/v1/jobs/", Some("submit_job")),
            ("POST", "/v1/jobs?x=1", Some("submit_job")),
            ("GET", "/v1/jobs/abc123", Some("check_status")),
            ("GET", "/v1/jobs/abc123/", Some("check_status")),
            ("GET", "/v1/jobs/abc123?verbose=1", Some("check_status")),
            ("get", "/v1/jobs/abc123", Some("check_status")),
            ("GET", "/v1/jobs", None),
            ("GET", "/v1/jobs/a/b", None),
            ("GET", "/v1/jobs//", None),
            ("GET", "/v1/models", Some("list_models")),
            ("POST", "/v1/models", None),
            ("DELETE", "/v1/jobs/1", None),
            ("GET", "/", None),
            ("GET", "/v1/jobsx", None),
        ];
        for (method, path, scope) in cases {
            assert_eq!(table.required_scope(method, path), scope, "{method} {path}");
        }
    }

    #[test]
    fn prefix_and_default_scope() {
        let table = RouteTable::new(
            vec![rule(&[], PathMatcher::prefix("/admin/").unwrap(), "admin")],
            Some("basic".into()),
        );
        assert_eq!(table.required_scope("PUT", "/admin/x"), Some("admin"));
        assert_eq!(table.required_scope("GET", "/adminx"), Some("basic"));
    }

    #[test]
    fn first_match_wins() {
        let table = RouteTable::new(
            vec![
                rule(
                    &["GET"],
                    PathMatcher::exact("/v1/jobs/special").unwrap(),
                    "special",
                ),
                rule(
                    &["GET"],
                    PathMatcher::template("/v1/jobs/{id}").unwrap(),
                    "check_status",
                ),
            ],
            None,
        );
        assert_eq!(
            table.required_scope("GET", "/v1/jobs/special"),
            Some("special")
        );
        assert_eq!(
            table.required_scope("GET", "/v1/jobs/other"),
            Some("check_status")
        );
    }

    #[test]
    fn bad_templates_are_rejected() {
        for bad in [
            "v1/jobs",
            "/v1/{",
            "/v1/{a-b}",
            "/v1/x{id}",
            "/v1?x",
            "/v 1",
        ] {
            assert!(PathMatcher::template(bad).is_err(), "{bad}");
        }
    }
}
