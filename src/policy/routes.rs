//! Route rules: which scope a request (method + path) requires. First match wins.
//!
//! Paths are matched as the most restrictive reading of what an upstream may make of them.
//! Envoy has already normalised the path (`//`, `/./`, `..`, `%2F`, unreserved escapes); on top
//! of that, upstreams such as Tomcat and Spring drop `;parameters` from each segment and some
//! route without regard to case. So a request is checked against two readings of its path (as
//! sent, and with every segment's `;…` removed, `%3B` counting as `;`), with ASCII case folded
//! unless the configuration asks for case-sensitive paths, and it needs the scope of every rule
//! either reading matches.
//!
//! The path-variant tables are `routes/tests.rs`.

use std::borrow::Cow;
use std::fmt;

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
    /// What usage counts the route's requests under ("usage by service"): the configured
    /// `name`, else the scope, else `unscoped`.
    pub name: String,
}

/// The ordered rules plus what applies to requests no rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    default_scope: Option<String>,
    /// Requests no rule matches are refused (403 OPERATION_NOT_ALLOWED) instead of taking
    /// `default_scope`.
    deny_unmatched: bool,
    /// Literal path segments compare case-sensitively (default: ASCII case folded).
    case_sensitive: bool,
}

/// What a request needs, over every reading of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// Any valid key with each of these scopes (at most one per reading).
    Scopes([Option<&'a str>; 2]),
    /// No rule matches a reading and unmatched requests are refused.
    NoRule,
}

/// Why a configured route path cannot be matched; `Display` says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute {
        path: String,
    },
    /// A query, a fragment, white space or a control character.
    NotPlain {
        path: String,
    },
    /// A `;` (or `%3B`): path parameters are removed before matching.
    Parameters {
        path: String,
    },
    BadParamName {
        path: String,
        name: String,
    },
    BadSegment {
        path: String,
        segment: String,
    },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute { path } => write!(f, "{path:?} must start with /"),
            PathError::NotPlain { path } => write!(
                f,
                "{path:?} must be a plain path without query, fragment or spaces"
            ),
            PathError::Parameters { path } => write!(
                f,
                "{path:?} must not contain ; (path parameters are removed before matching)"
            ),
            PathError::BadParamName { path, name } => write!(
                f,
                "{path:?}: parameter name {name:?} must be letters, digits or _"
            ),
            PathError::BadSegment { path, segment } => write!(
                f,
                "{path:?}: unknown parameter syntax in segment {segment:?}"
            ),
        }
    }
}

impl std::error::Error for PathError {}

fn check_path(path: &str) -> Result<(), PathError> {
    let path_error = |make: fn(String) -> PathError| Err(make(path.to_string()));
    if !path.starts_with('/') {
        return path_error(|path| PathError::NotAbsolute { path });
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return path_error(|path| PathError::NotPlain { path });
    }
    if path.contains(';') || path.to_ascii_lowercase().contains("%3b") {
        return path_error(|path| PathError::Parameters { path });
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
    pub fn exact(path: &str) -> Result<PathMatcher, PathError> {
        check_path(path)?;
        Ok(PathMatcher::Exact(trim_trailing_slash(path).to_string()))
    }

    pub fn prefix(path: &str) -> Result<PathMatcher, PathError> {
        check_path(path)?;
        Ok(PathMatcher::Prefix(path.to_string()))
    }

    pub fn template(path: &str) -> Result<PathMatcher, PathError> {
        check_path(path)?;
        let mut segments = Vec::new();
        for segment in trim_trailing_slash(path)[1..].split('/') {
            if segment.starts_with('{') && segment.ends_with('}') && segment.len() > 2 {
                let name = &segment[1..segment.len() - 1];
                if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(PathError::BadParamName {
                        path: path.to_string(),
                        name: name.to_string(),
                    });
                }
                segments.push(Segment::Param);
            } else if segment.contains(['{', '}']) {
                return Err(PathError::BadSegment {
                    path: path.to_string(),
                    segment: segment.to_string(),
                });
            } else {
                segments.push(Segment::Literal(segment.to_string()));
            }
        }
        Ok(PathMatcher::Template(segments))
    }

    /// Whether `path` (no query string) matches, case-sensitively.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_with(path, false)
    }

    /// Whether `path` (no query string) matches; with `fold`, ASCII case is ignored.
    pub fn matches_with(&self, path: &str, fold: bool) -> bool {
        let same = |a: &str, b: &str| {
            if fold {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            PathMatcher::Exact(exact) => same(trim_trailing_slash(path), exact),
            PathMatcher::Prefix(prefix) => path
                .get(..prefix.len())
                .is_some_and(|start| same(start, prefix)),
            PathMatcher::Template(segments) => {
                let trimmed = trim_trailing_slash(path);
                let Some(rest) = trimmed.strip_prefix('/') else {
                    return false;
                };
                let mut parts = rest.split('/');
                for segment in segments {
                    match (segment, parts.next()) {
                        (Segment::Literal(literal), Some(part)) if same(part, literal) => {}
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
    fn matches(&self, method: &str, path: &str, fold: bool) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.path.matches_with(path, fold)
    }
}

impl RouteTable {
    pub fn new(rules: Vec<RouteRule>, default_scope: Option<String>) -> RouteTable {
        RouteTable {
            rules,
            default_scope,
            deny_unmatched: false,
            case_sensitive: false,
        }
    }

    /// Sets how paths compare and what happens to requests no rule matches.
    pub fn with_options(mut self, case_sensitive: bool, deny_unmatched: bool) -> RouteTable {
        self.case_sensitive = case_sensitive;
        self.deny_unmatched = deny_unmatched;
        self
    }

    /// The first rule matching `path` (query string already removed) as sent, by index.
    fn first_match(&self, method: &str, path: &str) -> Option<usize> {
        let fold = !self.case_sensitive;
        self.rules
            .iter()
            .position(|rule| rule.matches(method, path, fold))
    }

    /// What the rule at `index` (or no rule) needs: `Some(scope or None)`, or `None` when no
    /// rule matches and unmatched requests are refused.
    fn needs(&self, index: Option<usize>) -> Option<Option<&str>> {
        match index.and_then(|index| self.rules.get(index)) {
            Some(rule) => Some(rule.scope.as_deref()),
            None if self.deny_unmatched => None,
            None => Some(self.default_scope.as_deref()),
        }
    }

    /// The route a request counts under in usage: the first rule its path as sent matches.
    /// `decide` takes it back through `RequestFacts`, so the rules are matched once.
    pub fn route(&self, method: &str, path: &str) -> Option<usize> {
        self.first_match(method, path_without_query(path))
    }

    /// The usage name of `route` (from [`RouteTable::route`]): `other` for no rule.
    pub fn name(&self, route: Option<usize>) -> &str {
        route
            .and_then(|index| self.rules.get(index))
            .map_or(keygate_contract::usage::OTHER_ROUTE, |rule| {
                rule.name.as_str()
            })
    }

    /// What a request needs: the scopes of the rules matching either reading of its path (see
    /// the module comment), or `NoRule`.
    pub fn access(&self, method: &str, path: &str) -> Access<'_> {
        self.access_from(self.route(method, path), method, path)
    }

    /// [`RouteTable::access`] with the first reading's rule already found (`route`).
    pub fn access_from(&self, route: Option<usize>, method: &str, path: &str) -> Access<'_> {
        let as_sent = path_without_query(path);
        let Some(first) = self.needs(route) else {
            return Access::NoRule;
        };
        let stripped = without_parameters(as_sent);
        if stripped == as_sent {
            return Access::Scopes([first, None]);
        }
        match self.needs(self.first_match(method, &stripped)) {
            Some(second) if second != first => Access::Scopes([first, second]),
            Some(_) => Access::Scopes([first, None]),
            None => Access::NoRule,
        }
    }
}

/// The path with every segment's `;parameters` removed (`%3B` counts as `;`), as Tomcat or
/// Spring would route it. Borrowed when there is nothing to remove.
pub fn without_parameters(path: &str) -> Cow<'_, str> {
    // Every request passes here: one scan settles the common path with neither `;` nor `%`.
    if !path.bytes().any(|b| b == b';' || b == b'%') {
        return Cow::Borrowed(path);
    }
    let has_encoded = path.contains("%3B") || path.contains("%3b");
    if !path.contains(';') && !has_encoded {
        return Cow::Borrowed(path);
    }
    let decoded = if has_encoded {
        Cow::Owned(path.replace("%3B", ";").replace("%3b", ";"))
    } else {
        Cow::Borrowed(path)
    };
    let mut out = String::with_capacity(decoded.len());
    for (i, segment) in decoded.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
    }
    Cow::Owned(out)
}

/// `:path` without its query string or fragment.
pub fn path_without_query(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(end) => &path[..end],
        None => path,
    }
}

#[cfg(test)]
mod tests;
