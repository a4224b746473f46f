//! One function per `keys` subcommand: build the request, call the API, print the result.

use crate::cli::{CreateArgs, KeysArgs, KeysCommand, LimitArgs, ListArgs, UpdateArgs, UsageArgs};
use crate::client::answers::{Deleted, Key, KeyPage, NewKey, UsageReport};
use crate::client::http::AdminClient;
use crate::client::table::{key_details, key_table, usage_table};
use serde::Serialize;
use serde_json::{json, Map, Value};

const SECRET_WARNING: &str =
    "Store this secret now: it is shown only once and cannot be recovered.";

pub fn run(args: KeysArgs) -> Result<(), String> {
    let token = args
        .token
        .filter(|token| !token.is_empty())
        .ok_or("KEYGATE_ADMIN_TOKEN (or --token) must be set to use the admin API")?;
    let client = AdminClient::new(&args.url, token);
    let json = args.json;
    match args.command {
        KeysCommand::Create(create) => {
            let minted: NewKey = client.post("/v1/keys", &create_body(create))?;
            print_minted(&minted, json, "Created")?;
        }
        KeysCommand::List(list) => {
            let page: KeyPage = client.get("/v1/keys", &list_query(list))?;
            print_list(&page, json)?;
        }
        KeysCommand::Show { id } => {
            let key: Key = client.get(&key_path(&id), &[])?;
            print_key(&key, json)?;
        }
        KeysCommand::Update(update) => {
            let path = key_path(&update.id);
            let current_limits = if has_limits(&update.limits) {
                let current: Key = client.get(&path, &[])?;
                to_json(&current.limits)?
            } else {
                Value::Null
            };
            let key: Key = client.patch(&path, &update_body(update, current_limits))?;
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
    }
    Ok(())
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
    limits.per_minute.is_some()
        || limits.per_hour.is_some()
        || limits.per_day.is_some()
        || limits.concurrent.is_some()
        || limits.per_month.is_some()
}

/// The given overrides laid over `base` (an overrides object or null).
fn limits_body(limits: &LimitArgs, base: Value) -> Value {
    let mut merged = match base {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    insert_some(&mut merged, "per_minute", limits.per_minute);
    insert_some(&mut merged, "per_hour", limits.per_hour);
    insert_some(&mut merged, "per_day", limits.per_day);
    insert_some(&mut merged, "concurrent", limits.concurrent);
    insert_some(&mut merged, "per_month", limits.per_month);
    Value::Object(merged)
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
        body.insert("limits".into(), limits_body(&args.limits, Value::Null));
    }
    Value::Object(body)
}

fn update_body(args: UpdateArgs, current_limits: Value) -> Value {
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
    if has_limits(&args.limits) {
        body.insert("limits".into(), limits_body(&args.limits, current_limits));
    }
    insert_some(&mut body, "active", args.active);
    Value::Object(body)
}

fn list_query(args: ListArgs) -> Vec<(&'static str, String)> {
    [
        ("team", args.team),
        ("environment", args.environment),
        ("active", args.active.map(|active| active.to_string())),
        ("limit", args.limit.map(|limit| limit.to_string())),
        ("cursor", args.cursor),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect()
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
fn to_json(answer: &impl Serialize) -> Result<Value, String> {
    serde_json::to_value(answer)
        .map_err(|error| format!("cannot print the answer as JSON: {error}"))
}

fn print_json(answer: &impl Serialize) -> Result<(), String> {
    let value = to_json(answer)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
    );
    Ok(())
}

fn print_key(key: &Key, json: bool) -> Result<(), String> {
    if json {
        print_json(key)?;
    } else {
        println!("{}", key_details(key));
    }
    Ok(())
}

fn print_minted(minted: &NewKey, json: bool, verb: &str) -> Result<(), String> {
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

fn print_list(page: &KeyPage, json: bool) -> Result<(), String> {
    if json {
        return print_json(page);
    }
    if page.keys.is_empty() {
        println!("No keys.");
    } else {
        println!("{}", key_table(&page.keys));
    }
    if let Some(cursor) = &page.next_cursor {
        println!("More keys follow: --cursor {cursor}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_merges_limit_flags_over_current_overrides() {
        let limits = LimitArgs {
            per_day: Some(50),
            ..LimitArgs::default()
        };
        let merged = limits_body(&limits, json!({"per_minute": 5, "per_day": 10}));
        assert_eq!(merged, json!({"per_minute": 5, "per_day": 50}));
    }

    #[test]
    fn key_paths_drop_unexpected_characters() {
        assert_eq!(key_path("key_abc/../x?y"), "/v1/keys/key_abcxy");
    }
}
