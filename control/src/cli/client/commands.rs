//! One function per `keys` subcommand: build the request, call the API, print the result.

use crate::cli::args::{
    ClientArgs, CreateArgs, KeysCommand, LimitArgs, LimitWindow, ListArgs, TeamUsageArgs,
    UpdateArgs, UsageArgs,
};
use crate::cli::client::answers::{
    Deleted, Key, KeyEvents, KeyPage, LeakReport, NewKey, TeamUsageReport, UsageReport,
};
use crate::cli::client::error::ClientError;
use crate::cli::client::http::{base_url, AdminClient};
use crate::cli::client::key_check::{check, describe, read_key};
use crate::cli::client::table::{key_details, key_table};
use crate::cli::client::usage::{events_table, team_usage_table, usage_table};
use serde::Serialize;
use serde_json::{json, Map, Value};

pub const SECRET_WARNING: &str =
    "Store this secret now: it is shown only once and cannot be recovered.";

/// How many pages `list --all` follows at most: a million keys at the largest page size.
const MAX_PAGES: usize = 1000;

/// The admin API client the global options describe, and whether to print JSON.
pub fn connect(client_args: ClientArgs) -> Result<(AdminClient, bool), ClientError> {
    let token = client_args
        .token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ClientError::Usage(
                "KEYGATE_ADMIN_TOKEN (or --token) must be set to use the admin API".into(),
            )
        })?;
    // Checked here rather than when parsing, so a KEYGATE_URL in the environment cannot stop
    // `serve`.
    let url = base_url(&client_args.url).map_err(|problem| {
        ClientError::Usage(format!(
            "--url (or KEYGATE_URL) {:?}: {problem}",
            client_args.url
        ))
    })?;
    let client = AdminClient::new(&url, token, client_args.ca_cert.as_deref())?;
    Ok((client, client_args.json))
}

pub fn run(client_args: ClientArgs, command: KeysCommand) -> Result<(), ClientError> {
    // Offline: no token, no service, nothing sent.
    if let KeysCommand::Check { key } = &command {
        return check_offline(&read_key(key)?, client_args.json);
    }
    let (client, json) = connect(client_args)?;
    match command {
        KeysCommand::Check { .. } => {}
        KeysCommand::Leaked(leaked) => {
            let body = json!({
                "key": read_key(&leaked.key)?,
                "url": leaked.found_at,
                "source": leaked.source,
            });
            let report: LeakReport = client.post("/v1/keys/leaked", &body)?;
            if json {
                print_json(&report)?;
            } else {
                let id = &report.key.id;
                if report.deactivated {
                    println!(
                        "Deactivated {id}: reported leaked (policy {}).",
                        report.policy
                    );
                } else {
                    println!("Recorded the leak of {id} (policy {}).", report.policy);
                }
                println!("Rotate it: keygate-control keys rotate {id}");
            }
        }
        KeysCommand::Create(create) => {
            let minted: NewKey = client.post("/v1/keys", &create_body(create))?;
            print_minted(&minted, json, "Created")?;
        }
        KeysCommand::List(list) => {
            let all = list.all;
            let query = list_query(list);
            let page = if all {
                every_page(&client, query)?
            } else {
                client.get("/v1/keys", &query)?
            };
            print_list(&page, json)?;
        }
        KeysCommand::Show { id } => {
            let key: Key = client.get(&key_path(&id), &[])?;
            print_key(&key, json)?;
        }
        KeysCommand::Update(update) => {
            let path = key_path(&update.id);
            let key: Key = client.patch(&path, &update_body(update)?)?;
            print_key(&key, json)?;
        }
        KeysCommand::Revoke { id } => {
            let key: Key = client.patch(&key_path(&id), &json!({ "active": false }))?;
            if json {
                print_key(&key, true)?;
            } else {
                println!("Revoked {id}: it stays listed but no longer authenticates.");
            }
        }
        KeysCommand::Rotate { id, grace_seconds } => {
            let body = json!({ "grace_seconds": grace_seconds });
            let minted: NewKey = client.post(&format!("{}/rotate", key_path(&id)), &body)?;
            print_minted(&minted, json, "Rotated")?;
            if !json {
                println!("The old key {id} keeps working for {grace_seconds} s.");
            }
        }
        KeysCommand::Delete { id } => {
            let Deleted = client.delete(&key_path(&id))?;
            if json {
                println!("{}", json!({ "id": id, "deleted": true }));
            } else {
                println!("Deleted {id}.");
            }
        }
        KeysCommand::Usage(usage) => {
            let path = format!("{}/usage", key_path(&usage.id));
            let report: UsageReport = client.get(&path, &usage_query(usage))?;
            if json {
                print_json(&report)?;
            } else {
                println!("{}", usage_table(&report));
            }
        }
        KeysCommand::Events(asked) => {
            let path = format!("{}/events", key_path(&asked.id));
            let query: Vec<(&'static str, String)> = [
                ("outcome", asked.outcome),
                ("limit", asked.limit.map(|limit| limit.to_string())),
                ("before", asked.before),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, value)))
            .collect();
            let events: KeyEvents = client.get(&path, &query)?;
            if json {
                print_json(&events)?;
            } else {
                println!("{}", events_table(&events));
            }
        }
    }
    Ok(())
}

/// `keygate-control usage`: usage summed over a team's keys, or every key.
pub fn run_team_usage(client_args: ClientArgs, args: TeamUsageArgs) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    let query: Vec<(&'static str, String)> = [
        ("team", args.team),
        ("from", args.from),
        ("to", args.to),
        ("granularity", args.granularity),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect();
    let report: TeamUsageReport = client.get("/v1/usage", &query)?;
    if json {
        print_json(&report)
    } else {
        println!("{}", team_usage_table(&report));
        Ok(())
    }
}

fn key_path(id: &str) -> String {
    // Ids are base62; anything else would not match a key anyway, so keep it out of the path.
    let safe: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("/v1/keys/{safe}")
}

fn insert_some(body: &mut Map<String, Value>, field: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        body.insert(field.into(), value.into());
    }
}

fn has_limits(limits: &LimitArgs) -> bool {
    limit_values(limits)
        .iter()
        .any(|(_, value)| value.is_some())
}

fn limit_values(limits: &LimitArgs) -> [(LimitWindow, Option<u64>); 5] {
    [
        (LimitWindow::PerMinute, limits.per_minute),
        (LimitWindow::PerHour, limits.per_hour),
        (LimitWindow::PerDay, limits.per_day),
        (LimitWindow::Concurrent, limits.concurrent),
        (LimitWindow::PerMonth, limits.per_month),
    ]
}

/// The `limits` object of a create: the given overrides.
pub(super) fn limits_body(limits: &LimitArgs) -> Value {
    let mut body = Map::new();
    for (window, value) in limit_values(limits) {
        insert_some(&mut body, window.field(), value);
    }
    Value::Object(body)
}

/// The `limits` object of a PATCH, which the service merges into the key's overrides: the
/// given values, and `null` for each cleared override (`all` clears those not given).
pub(super) fn limits_patch(
    limits: &LimitArgs,
    clear: &[LimitWindow],
) -> Result<Option<Value>, ClientError> {
    let clear_all = clear.contains(&LimitWindow::All);
    let mut patch = Map::new();
    for (window, value) in limit_values(limits) {
        let cleared = clear.contains(&window);
        match value {
            Some(_) if cleared => {
                return Err(ClientError::Usage(format!(
                    "--{} and --clear-limit {} contradict each other",
                    window.field().replace('_', "-"),
                    window.field()
                )))
            }
            Some(value) => {
                patch.insert(window.field().into(), value.into());
            }
            None if cleared || clear_all => {
                patch.insert(window.field().into(), Value::Null);
            }
            None => {}
        }
    }
    Ok((!patch.is_empty()).then_some(Value::Object(patch)))
}

fn create_body(args: CreateArgs) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), args.name.into());
    insert_some(&mut body, "environment", args.environment);
    insert_some(&mut body, "team", args.team);
    body.insert("scopes".into(), args.scopes.into());
    body.insert("allowed_ips".into(), args.allowed_ips.into());
    insert_some(&mut body, "expires_at", args.expires_at);
    insert_some(&mut body, "plan", args.plan);
    if has_limits(&args.limits) {
        body.insert("limits".into(), limits_body(&args.limits));
    }
    Value::Object(body)
}

fn update_body(args: UpdateArgs) -> Result<Value, ClientError> {
    let mut body = Map::new();
    insert_some(&mut body, "name", args.name);
    insert_some(&mut body, "team", args.team);
    if args.clear_scopes || !args.scopes.is_empty() {
        body.insert("scopes".into(), args.scopes.into());
    }
    if args.clear_allowed_ips || !args.allowed_ips.is_empty() {
        body.insert("allowed_ips".into(), args.allowed_ips.into());
    }
    if args.no_expiry {
        body.insert("expires_at".into(), Value::Null);
    }
    insert_some(&mut body, "expires_at", args.expires_at);
    insert_some(&mut body, "plan", args.plan);
    insert_some(
        &mut body,
        "limits",
        limits_patch(&args.limits, &args.clear_limits)?,
    );
    insert_some(&mut body, "active", args.active);
    Ok(Value::Object(body))
}

fn list_query(args: ListArgs) -> Vec<(&'static str, String)> {
    [
        ("team", args.team),
        ("environment", args.environment),
        ("active", args.active.map(|active| active.to_string())),
        (
            "status",
            args.status.map(|status| status.as_str().to_string()),
        ),
        ("limit", args.limit.map(|limit| limit.to_string())),
        ("cursor", args.cursor),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect()
}

/// Every page from the one `query` asks for on, as one page without a next cursor.
fn every_page(
    client: &AdminClient,
    mut query: Vec<(&'static str, String)>,
) -> Result<KeyPage, ClientError> {
    let mut keys = Vec::new();
    for _ in 0..MAX_PAGES {
        let page: KeyPage = client.get("/v1/keys", &query)?;
        keys.extend(page.keys);
        let Some(next) = page.next_cursor else {
            return Ok(KeyPage {
                keys,
                next_cursor: None,
            });
        };
        let previous = query
            .iter()
            .position(|(name, _)| *name == "cursor")
            .map(|index| query.remove(index).1);
        if previous.as_deref() == Some(next.as_str()) {
            return Err(ClientError::Paging(format!(
                "the service answered cursor {next} with the same cursor again; stopped"
            )));
        }
        query.push(("cursor", next));
    }
    Err(ClientError::Paging(format!(
        "more than {MAX_PAGES} pages; use a larger --limit, or --cursor to go on from a page"
    )))
}

fn usage_query(args: UsageArgs) -> Vec<(&'static str, String)> {
    [
        ("from", args.from),
        ("to", args.to),
        ("granularity", args.granularity),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect()
}

/// An answer as JSON, as the service sent it for the fields this version knows (keys sorted).
fn to_json(answer: &impl Serialize) -> Result<Value, ClientError> {
    serde_json::to_value(answer)
        .map_err(|error| ClientError::Output(format!("cannot print the answer as JSON: {error}")))
}

/// `keys check`: prints what the key's shape says; an invalid key is an error (exit 1).
fn check_offline(key: &str, json: bool) -> Result<(), ClientError> {
    let found = check(key);
    if json {
        print_json(&found)?;
    } else {
        println!("{}", describe(&found));
    }
    if found.valid {
        Ok(())
    } else {
        Err(ClientError::Invalid(format!(
            "{} is not a valid Keygate key",
            found.redacted
        )))
    }
}

pub fn print_json(answer: &impl Serialize) -> Result<(), ClientError> {
    let value = to_json(answer)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
    );
    Ok(())
}

fn print_key(key: &Key, json: bool) -> Result<(), ClientError> {
    if json {
        print_json(key)?;
    } else {
        println!("{}", key_details(key));
    }
    Ok(())
}

fn print_minted(minted: &NewKey, json: bool, verb: &str) -> Result<(), ClientError> {
    if json {
        print_json(&minted.key)?;
        eprintln!("{SECRET_WARNING}");
        return Ok(());
    }
    println!("{verb} key {}.", minted.key.id);
    println!("{}", key_details(&minted.key));
    println!();
    println!("Secret: {}", minted.secret);
    println!("{SECRET_WARNING}");
    Ok(())
}

fn print_list(page: &KeyPage, json: bool) -> Result<(), ClientError> {
    if json {
        return print_json(page);
    }
    if page.keys.is_empty() {
        println!("No keys.");
    } else {
        println!("{}", key_table(&page.keys, crate::domain::clock::now()));
    }
    if let Some(cursor) = &page.next_cursor {
        println!("More keys follow: --cursor {cursor} (or --all for every page)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update_args(limits: LimitArgs, clear_limits: Vec<LimitWindow>) -> UpdateArgs {
        UpdateArgs {
            id: "key_abc".into(),
            name: None,
            team: None,
            scopes: vec![],
            clear_scopes: false,
            allowed_ips: vec![],
            clear_allowed_ips: false,
            expires_at: None,
            no_expiry: false,
            plan: None,
            limits,
            clear_limits,
            active: None,
        }
    }

    #[test]
    fn update_sends_only_the_limits_it_sets_or_clears() {
        let limits = LimitArgs {
            per_day: Some(50),
            ..LimitArgs::default()
        };
        let body = update_body(update_args(limits, vec![LimitWindow::PerMinute])).unwrap();
        assert_eq!(body, json!({"limits": {"per_minute": null, "per_day": 50}}));
        let body = update_body(update_args(LimitArgs::default(), vec![])).unwrap();
        assert_eq!(body, json!({}));
    }

    #[test]
    fn clearing_all_limits_keeps_the_ones_given() {
        let limits = LimitArgs {
            per_hour: Some(9),
            ..LimitArgs::default()
        };
        let body = update_body(update_args(limits, vec![LimitWindow::All])).unwrap();
        assert_eq!(
            body,
            json!({"limits": {"per_minute": null, "per_hour": 9, "per_day": null,
                "concurrent": null, "per_month": null}})
        );
    }

    #[test]
    fn setting_and_clearing_the_same_limit_is_refused() {
        let limits = LimitArgs {
            per_month: Some(5),
            ..LimitArgs::default()
        };
        let error = update_body(update_args(limits, vec![LimitWindow::PerMonth])).unwrap_err();
        assert_eq!(
            error,
            ClientError::Usage(
                "--per-month and --clear-limit per_month contradict each other".into()
            )
        );
    }

    #[test]
    fn key_paths_drop_unexpected_characters() {
        assert_eq!(key_path("key_abc/../x?y"), "/v1/keys/key_abcxy");
    }
}
