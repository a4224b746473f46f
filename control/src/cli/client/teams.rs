//! `keygate-control teams …`: teams, their plan and the quotas their keys share.

use crate::cli::args::{ClientArgs, TeamsCommand};
use crate::cli::client::answers::{json as json_body, Deleted, Reply};
use crate::cli::client::commands::{connect, print_json};
use crate::cli::client::error::ClientError;
use crate::cli::client::table::{column, render, text, Fit};
use crate::wire::teams::{TeamList, TeamView};
use serde_json::{json, Map, Value};

/// A team created by `POST /v1/teams`.
pub struct NewTeam(pub TeamView);

impl Reply for TeamView {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a team");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

impl Reply for NewTeam {
    const STATUS: u16 = 201;
    const BODY: Option<&'static str> = Some("a new team");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body).map(NewTeam)
    }
}

impl Reply for TeamList {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a list of teams");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

/// `/v1/{collection}/{name}` with the name percent-encoded as one path segment (team names may
/// hold spaces, slashes or any printable character).
pub fn item_path(collection: &str, name: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("/v1/{collection}/{encoded}")
}

/// `used/quota` or just `used` without a quota.
fn use_of(used: u64, quota: Option<u64>) -> String {
    match quota {
        Some(quota) => format!("{used}/{quota}"),
        None => used.to_string(),
    }
}

/// One line per team: its plan, keys and use of the quotas its keys share.
pub fn team_table(teams: &[TeamView]) -> String {
    let rows: Vec<Vec<String>> = teams
        .iter()
        .map(|team| {
            vec![
                text(&team.name),
                team.plan
                    .as_ref()
                    .map_or("-".into(), |plan| text(plan.as_str())),
                team.key_count.to_string(),
                use_of(team.usage.today, team.usage.per_day),
                use_of(team.usage.this_month, team.usage.per_month),
            ]
        })
        .collect();
    let columns = [
        column("TEAM", Fit::Truncate),
        column("PLAN", Fit::Keep),
        column("KEYS", Fit::Keep),
        column("TODAY", Fit::Keep),
        column("THIS MONTH", Fit::Keep),
    ];
    render(&columns, &rows, true)
}

fn print_team(team: &TeamView, json: bool, verb: &str) -> Result<(), ClientError> {
    if json {
        return print_json(team);
    }
    println!("{verb} team {}.", text(&team.name));
    println!("{}", team_table(std::slice::from_ref(team)));
    if let Some(keys) = &team.keys {
        for key in keys {
            println!("  key   {}  {}", key.id, text(&key.name));
        }
    }
    if let Some(tokens) = &team.tokens {
        for token in tokens {
            println!(
                "  token {}  {} ({})",
                token.id,
                text(&token.name),
                token.role.as_str()
            );
        }
    }
    Ok(())
}

/// `Some(null)` for a cleared field, `Some(value)` for a set one, `None` for neither.
fn patch_field<T: Into<Value>>(value: Option<T>, clear: bool) -> Option<Value> {
    if clear {
        Some(Value::Null)
    } else {
        value.map(Into::into)
    }
}

pub fn run_teams(client_args: ClientArgs, command: TeamsCommand) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    match command {
        TeamsCommand::List => {
            let list: TeamList = client.get("/v1/teams", &[])?;
            if json {
                print_json(&list)?;
            } else if list.teams.is_empty() {
                println!("No teams.");
            } else {
                println!("{}", team_table(&list.teams));
            }
        }
        TeamsCommand::Show { name } => {
            let team: TeamView = client.get(&item_path("teams", &name), &[])?;
            print_team(&team, json, "Showing")?;
        }
        TeamsCommand::Create {
            name,
            plan,
            per_day,
            per_month,
        } => {
            let body =
                json!({"name": name, "plan": plan, "per_day": per_day, "per_month": per_month});
            let NewTeam(team) = client.post("/v1/teams", &body)?;
            print_team(&team, json, "Created")?;
        }
        TeamsCommand::Update {
            name,
            plan,
            clear_plan,
            per_day,
            clear_per_day,
            per_month,
            clear_per_month,
        } => {
            let mut body = Map::new();
            let fields = [
                ("plan", patch_field(plan, clear_plan)),
                ("per_day", patch_field(per_day, clear_per_day)),
                ("per_month", patch_field(per_month, clear_per_month)),
            ];
            for (field, value) in fields {
                if let Some(value) = value {
                    body.insert(field.into(), value);
                }
            }
            if body.is_empty() {
                return Err(ClientError::Usage(
                    "nothing to change: give --plan, --per-day, --per-month or a --clear-… flag"
                        .into(),
                ));
            }
            let team: TeamView = client.patch(&item_path("teams", &name), &Value::Object(body))?;
            print_team(&team, json, "Updated")?;
        }
        TeamsCommand::Delete { name } => {
            let Deleted = client.delete(&item_path("teams", &name))?;
            if json {
                println!("{}", json!({ "name": name, "deleted": true }));
            } else {
                println!("Deleted team {}.", text(&name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_encoded_path_segment() {
        assert_eq!(item_path("teams", "acme"), "/v1/teams/acme");
        assert_eq!(
            item_path("teams", "a b/../c?d"),
            "/v1/teams/a%20b%2F..%2Fc%3Fd"
        );
        assert_eq!(item_path("teams", "東"), "/v1/teams/%E6%9D%B1");
    }

    #[test]
    fn the_table_shows_use_against_the_shared_quotas() {
        let body = json!({"teams": [{
            "name": "acme", "plan": "free", "per_day": null, "per_month": null,
            "usage": {"today": 12, "this_month": 340, "per_day": 1000, "per_month": null},
            "key_count": 3, "created_at": "2026-12-07T00:00:00Z", "updated_at": "2026-12-07T00:00:00Z"
        }]});
        let list = TeamList::from_body(&serde_json::to_vec(&body).unwrap()).unwrap();
        let table = team_table(&list.teams);
        let line = table.lines().nth(1).unwrap();
        assert!(
            line.starts_with("acme") && line.contains("12/1000") && line.contains("340"),
            "{table}"
        );
    }
}
