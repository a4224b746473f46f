//! `PathMatcher::{exact,prefix,template}`, `matches` and `RouteTable::access`.
//!
//! Input: one line each. `E <path>`, `P <path>`, `T <path>` add an exact, prefix or template
//! rule (optionally `E GET,POST <path>` to restrict methods); `> <METHOD> <path>` is a request.
#![no_main]

use keygate::policy::routes::{PathMatcher, RouteRule, RouteTable};
use libfuzzer_sys::fuzz_target;

/// A concrete path a template matches: each `{param}` segment replaced by a value.
fn instantiate(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.len() > 2 && segment.starts_with('{') && segment.ends_with('}') {
                "v"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut rules = Vec::new();
    let mut requests = Vec::new();
    for line in text.split('\n') {
        let Some((kind, rest)) = line.split_once(' ') else {
            continue;
        };
        if kind == ">" {
            let (method, path) = rest.split_once(' ').unwrap_or(("GET", rest));
            requests.push((method, path));
            continue;
        }
        let (methods, path) = match rest.split_once(' ') {
            Some((methods, path)) if methods.bytes().all(|b| b.is_ascii_alphabetic() || b == b',') => {
                (methods.split(',').filter(|m| !m.is_empty()).map(str::to_ascii_uppercase).collect(), path)
            }
            _ => (Vec::new(), rest),
        };
        let matcher = match kind {
            "E" => PathMatcher::exact(path),
            "P" => PathMatcher::prefix(path),
            "T" => PathMatcher::template(path),
            _ => continue,
        };
        let Ok(matcher) = matcher else { continue };
        // A rule matches the path it was written with.
        let own = match kind {
            "T" => instantiate(path),
            _ => path.to_string(),
        };
        assert!(matcher.matches(&own), "{kind} {path:?} does not match {own:?}");
        let scope = format!("scope{}", rules.len());
        rules.push((kind == "P", RouteRule { methods, path: matcher, scope: Some(scope.clone()), name: scope }));
    }

    for (method, path) in &requests {
        let path = keygate::policy::routes::path_without_query(path);
        if !path.starts_with('/') || path.ends_with('/') {
            continue;
        }
        let slashed = format!("{path}/");
        for (is_prefix, rule) in &rules {
            if !is_prefix {
                assert_eq!(
                    rule.path.matches(path),
                    rule.path.matches(&slashed),
                    "{:?}: {path:?} and {slashed:?} differ",
                    rule.path
                );
            }
        }
        // Without prefix rules, the scope a request needs ignores a trailing slash, the query
        // string and the method's case.
        let exact_and_templates: Vec<RouteRule> =
            rules.iter().filter(|(p, _)| !p).map(|(_, r)| r.clone()).collect();
        let table = RouteTable::new(exact_and_templates, Some("default".into()));
        let scope = table.access(method, path);
        assert_eq!(scope, table.access(method, &slashed));
        assert_eq!(scope, table.access(method, &format!("{slashed}?x=/&y#z")));
        assert_eq!(scope, table.access(&method.to_ascii_lowercase(), path));
        assert_eq!(scope, table.access(method, &path.to_ascii_uppercase()));
        // A `;parameter` never takes a scope away: what the stripped path needs is still
        // needed.
        if let keygate::policy::routes::Access::Scopes(plain) = table.access(method, path) {
            if let keygate::policy::routes::Access::Scopes(with) = table.access(method, &format!("{path};x")) {
                for needed in plain.into_iter().flatten() {
                    assert!(with.contains(&Some(needed)), "{path};x lost {needed}");
                }
            }
        }
        // The full table (prefixes included) answers too, first match first.
        let all = RouteTable::new(rules.iter().map(|(_, r)| r.clone()).collect(), None);
        let _ = all.access(method, path);
    }
});
