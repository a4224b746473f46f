//! `keygate-control tokens …` and `keygate-control audit`: management tokens and the audit log.

use crate::cli::args::{AuditArgs, ClientArgs, TokensCommand};
use crate::cli::client::answers::{AuditPage, Deleted, NewToken, TokenList};
use crate::cli::client::commands::{connect, print_json, SECRET_WARNING};
use crate::cli::client::error::ClientError;
use crate::cli::client::table::{audit_table, token_table};
use serde_json::{json, Map, Value};

fn token_path(id: &str) -> String {
    // Ids are base62; anything else would not match a token anyway, so keep it out of the path.
    let safe: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("/v1/tokens/{safe}")
}

pub fn run_tokens(client_args: ClientArgs, command: TokensCommand) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    match command {
        TokensCommand::Create {
            name,
            role,
            team,
            expires_at,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), Value::from(name));
            body.insert("role".into(), Value::from(role));
            if let Some(team) = team {
                body.insert("team".into(), Value::from(team));
            }
            if let Some(expires_at) = expires_at {
                body.insert("expires_at".into(), Value::from(expires_at));
            }
            let minted: NewToken = client.post("/v1/tokens", &Value::Object(body))?;
            print_minted(&minted, json, "Created")?;
        }
        TokensCommand::List => {
            let list: TokenList = client.get("/v1/tokens", &[])?;
            if json {
                print_json(&list)?;
            } else if list.tokens.is_empty() {
                println!("No tokens.");
            } else {
                println!("{}", token_table(&list.tokens));
            }
        }
        TokensCommand::Revoke { id } => {
            let Deleted = client.delete(&token_path(&id))?;
            if json {
                println!("{}", json!({ "id": id, "revoked": true }));
            } else {
                println!("Revoked {id}: it no longer authenticates.");
            }
        }
        TokensCommand::Rotate { id, grace_seconds } => {
            let body = json!({ "grace_seconds": grace_seconds });
            let path = format!("{}/rotate", token_path(&id));
            let minted: NewToken = client.post(&path, &body)?;
            print_minted(&minted, json, "Rotated")?;
            if !json {
                println!("The old token {id} keeps working for {grace_seconds} s.");
            }
        }
    }
    Ok(())
}

fn print_minted(minted: &NewToken, json: bool, verb: &str) -> Result<(), ClientError> {
    if json {
        print_json(&minted.token)?;
        eprintln!("{SECRET_WARNING}");
        return Ok(());
    }
    println!("{verb} token {}.", minted.token.id);
    println!("{}", token_table(std::slice::from_ref(&minted.token)));
    println!();
    println!("Secret: {}", minted.secret);
    println!("{SECRET_WARNING}");
    Ok(())
}

pub fn run_audit(client_args: ClientArgs, args: AuditArgs) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    let query: Vec<(&str, String)> = [
        ("target", args.target),
        ("from", args.from),
        ("limit", args.limit.map(|limit| limit.to_string())),
        ("cursor", args.cursor),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .collect();
    let page: AuditPage = client.get("/v1/audit", &query)?;
    if json {
        return print_json(&page);
    }
    if page.entries.is_empty() {
        println!("No audit entries.");
    } else {
        println!("{}", audit_table(&page.entries));
    }
    if let Some(cursor) = &page.next_cursor {
        println!("More entries follow: --cursor {cursor}");
    }
    Ok(())
}
