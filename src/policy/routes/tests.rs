//! The route table: the shipped routes, first match, bad templates, and the readings of a path
//! (as sent, without `;parameters`, case folded) each needing its scope.

use super::*;

fn rule(methods: &[&str], path: PathMatcher, scope: &str) -> RouteRule {
    RouteRule {
        methods: methods.iter().map(|m| m.to_string()).collect(),
        path,
        scope: Some(scope.to_string()),
        name: scope.to_string(),
    }
}

/// The scopes a request needs, or `None` for `NoRule`.
fn needs<'a>(table: &'a RouteTable, method: &str, path: &str) -> Option<Vec<&'a str>> {
    match table.access(method, path) {
        Access::Scopes(scopes) => Some(scopes.into_iter().flatten().collect()),
        Access::NoRule => None,
    }
}

fn scope_of<'a>(table: &'a RouteTable, method: &str, path: &str) -> Option<&'a str> {
    needs(table, method, path).and_then(|scopes| scopes.first().copied())
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
        assert_eq!(scope_of(&table, method, path), scope, "{method} {path}");
    }
}

#[test]
fn prefix_and_default_scope() {
    let table = RouteTable::new(
        vec![rule(&[], PathMatcher::prefix("/admin/").unwrap(), "admin")],
        Some("basic".into()),
    );
    assert_eq!(scope_of(&table, "PUT", "/admin/x"), Some("admin"));
    assert_eq!(scope_of(&table, "GET", "/adminx"), Some("basic"));
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
    assert_eq!(scope_of(&table, "GET", "/v1/jobs/special"), Some("special"));
    assert_eq!(
        scope_of(&table, "GET", "/v1/jobs/other"),
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
        "/v1/jobs;x",
        "/v1/jobs%3Bx",
    ] {
        assert!(PathMatcher::template(bad).is_err(), "{bad}");
    }
}

#[test]
fn path_variants_need_the_scope_of_the_path_they_stand_for() {
    let table = shipped_table();
    let cases = [
        ("POST", "/v1/jobs;x", "submit_job"),
        ("POST", "/v1/jobs;jsessionid=1", "submit_job"),
        ("POST", "/v1/jobs;", "submit_job"),
        ("POST", "/v1/jobs%3Bx", "submit_job"),
        ("POST", "/v1/jobs%3bx?y=1", "submit_job"),
        ("POST", "/V1/JOBS", "submit_job"),
        ("post", "/v1/Jobs/", "submit_job"),
        ("POST", "/v1;x/jobs;y", "submit_job"),
        ("GET", "/v1/JOBS/123", "check_status"),
        ("GET", "/v1/jobs/123;x", "check_status"),
        ("GET", "/v1/jobs;a/123", "check_status"),
        ("GET", "/v1/jobs/123%3Bx", "check_status"),
        ("GET", "/V1/Models;x", "list_models"),
    ];
    for (method, path, scope) in cases {
        assert_eq!(
            needs(&table, method, path),
            Some(vec![scope]),
            "{method} {path}"
        );
    }
}

#[test]
fn both_readings_count_when_they_match_different_rules() {
    let table = RouteTable::new(
        vec![
            RouteRule {
                methods: vec![],
                path: PathMatcher::exact("/v1/a").unwrap(),
                scope: None,
                name: "unscoped".into(),
            },
            rule(&[], PathMatcher::template("/v1/{x}").unwrap(), "secret"),
        ],
        None,
    );
    // As sent it is the template's (`a;b` is one segment); stripped it is `/v1/a`.
    assert_eq!(needs(&table, "GET", "/v1/a;b"), Some(vec!["secret"]));
    assert_eq!(needs(&table, "GET", "/v1/a"), Some(vec![]));
}

#[test]
fn case_sensitive_paths_and_deny_unmatched_are_options() {
    let sensitive = shipped_table().with_options(true, false);
    assert_eq!(needs(&sensitive, "POST", "/V1/JOBS"), Some(vec![]));
    assert_eq!(
        needs(&sensitive, "POST", "/v1/jobs;x"),
        Some(vec!["submit_job"])
    );
    let strict = shipped_table().with_options(false, true);
    assert_eq!(needs(&strict, "GET", "/v1/other"), None);
    assert_eq!(needs(&strict, "DELETE", "/v1/jobs/1"), None);
    assert_eq!(
        needs(&strict, "GET", "/v1/models"),
        Some(vec!["list_models"])
    );
    // Either reading without a rule is enough to refuse.
    let templated = RouteTable::new(
        vec![rule(&[], PathMatcher::template("/v1/{x}").unwrap(), "s")],
        None,
    )
    .with_options(false, true);
    assert_eq!(needs(&templated, "GET", "/v1/a;b/c"), None);
}

#[test]
fn parameters_are_removed_per_segment() {
    assert_eq!(without_parameters("/v1/jobs"), "/v1/jobs");
    assert!(matches!(without_parameters("/v1/jobs"), Cow::Borrowed(_)));
    assert_eq!(without_parameters("/a;x/b;y=1;z/c"), "/a/b/c");
    assert_eq!(without_parameters("/a%3Bx/b%3b"), "/a/b");
    assert_eq!(without_parameters(";"), "");
}

#[test]
fn usage_names_the_first_rule_the_path_as_sent_matches() {
    let mut named = rule(
        &["POST"],
        PathMatcher::prefix("/v1/images").unwrap(),
        "images",
    );
    named.name = "image-generation".into();
    let table = RouteTable::new(
        vec![
            named,
            rule(&[], PathMatcher::prefix("/v1/").unwrap(), "any"),
        ],
        None,
    );
    let name = |method, path| table.name(table.route(method, path));
    assert_eq!(name("POST", "/v1/images/new?x=1"), "image-generation");
    assert_eq!(name("GET", "/v1/images/new"), "any");
    assert_eq!(name("GET", "/health"), "other");
}
