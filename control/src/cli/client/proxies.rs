//! `keygate-control proxies …` and `keygate-control enrollment-tokens …`: the fleet list,
//! credentials issued and revoked, a proxy's reports, enrollment tokens.

use crate::cli::args::{ClientArgs, EnrollmentTokensCommand, ProxiesCommand};
use crate::cli::client::answers::{json as json_body, Deleted, Reply};
use crate::cli::client::commands::{connect, print_json};
use crate::cli::client::error::ClientError;
use crate::cli::client::table::{column, render, text, Fit};
use crate::domain::clock;
use crate::wire::proxies::{
    EnrollmentTokenList, EnrollmentTokenView, ProxyList, ProxyView, ReportedUsage,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeMap;

/// An answer of `status` read as `T`.
macro_rules! reply {
    ($type:ty, $wrapper:ident, $status:expr, $what:expr) => {
        pub struct $wrapper(pub $type);
        impl Reply for $wrapper {
            const STATUS: u16 = $status;
            const BODY: Option<&'static str> = Some($what);
            fn from_body(body: &[u8]) -> Result<Self, String> {
                json_body(body).map($wrapper)
            }
        }
    };
}

reply!(ProxyList, Fleet, 200, "a list of proxies");
reply!(ProxyView, Proxy, 200, "a proxy");
reply!(ProxyView, IssuedProxy, 201, "a proxy with its credential");
reply!(ReportedUsage, Reports, 200, "a proxy's reports");
reply!(
    EnrollmentTokenList,
    EnrollmentTokens,
    200,
    "a list of enrollment tokens"
);
reply!(
    EnrollmentTokenView,
    NewEnrollmentToken,
    201,
    "a new enrollment token"
);

/// How long ago an instant as served was (`12s`, `5m`, `3h`, `2d`), `-` for none.
fn ago(at: Option<&String>, now: DateTime<Utc>) -> String {
    let Some(at) = at.and_then(|at| clock::parse(at)) else {
        return "-".into();
    };
    let seconds = (now - at).num_seconds().max(0);
    match seconds {
        0..=119 => format!("{seconds}s"),
        120..=7_199 => format!("{}m", seconds / 60),
        7_200..=172_799 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// One line per proxy: state, name, lag, last sighting and how its reports fare.
pub fn proxy_table(proxies: &[ProxyView], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = proxies
        .iter()
        .map(|proxy| {
            vec![
                proxy.id.clone(),
                proxy.state.clone(),
                text(&proxy.name),
                format!("{}v {}s", proxy.lag_versions, proxy.lag_seconds),
                ago(proxy.last_seen.as_ref(), now),
                match (&proxy.last_report.failing_since, &proxy.last_report.at) {
                    (Some(since), _) => format!("failing {}", ago(Some(since), now)),
                    (None, Some(_)) => "ok".into(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    let columns = [
        column("ID", Fit::Keep),
        column("STATE", Fit::Keep),
        column("NAME", Fit::Truncate),
        column("LAG", Fit::Keep),
        column("SEEN", Fit::Keep),
        column("REPORTS", Fit::Keep),
    ];
    render(&columns, &rows, true)
}

fn labels(pairs: &[String]) -> Result<BTreeMap<String, String>, ClientError> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .ok_or_else(|| ClientError::Usage(format!("--label {pair:?}: write NAME=VALUE")))
        })
        .collect()
}

fn proxy_path(id: &str) -> String {
    crate::cli::client::teams::item_path("proxies", id)
}

pub fn run_proxies(client_args: ClientArgs, command: ProxiesCommand) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    match command {
        ProxiesCommand::List => {
            let Fleet(list) = client.get("/v1/proxies", &[])?;
            if json {
                print_json(&list)?;
            } else if list.proxies.is_empty() {
                println!("No proxies.");
            } else {
                println!("Newest snapshot version: {}", list.snapshot_version);
                println!("{}", proxy_table(&list.proxies, Utc::now()));
            }
        }
        ProxiesCommand::Show { id } => {
            let Proxy(proxy) = client.get(&proxy_path(&id), &[])?;
            if json {
                print_json(&proxy)?;
            } else {
                println!("{}", proxy_table(std::slice::from_ref(&proxy), Utc::now()));
            }
        }
        ProxiesCommand::Issue {
            name,
            labels: pairs,
        } => {
            let body = json!({ "name": name, "labels": labels(&pairs)? });
            let IssuedProxy(proxy) = client.post("/v1/proxies", &body)?;
            if json {
                print_json(&proxy)?;
            } else {
                println!(
                    "Issued a credential for proxy {} ({}).",
                    proxy.id,
                    text(&proxy.name)
                );
                println!(
                    "credential: {}",
                    proxy.credential_secret.as_deref().unwrap_or_default()
                );
                println!("Put it in the filter's control.token; it is not shown again.");
            }
        }
        ProxiesCommand::Revoke { id } => {
            let Deleted = client.delete(&proxy_path(&id))?;
            if json {
                println!("{}", json!({ "id": id, "revoked": true }));
            } else {
                println!("Revoked proxy {id}: its next call is refused.");
            }
        }
        ProxiesCommand::Reports { id } => {
            let Reports(reports) = client.get(&format!("{}/reports", proxy_path(&id)), &[])?;
            print_reports(&reports, json, "reported")?;
        }
        ProxiesCommand::DiscardReports { id } => {
            let Reports(reports) = client.delete(&format!("{}/reports", proxy_path(&id)))?;
            print_reports(&reports, json, "discarded")?;
        }
    }
    Ok(())
}

fn print_reports(reports: &ReportedUsage, json: bool, verb: &str) -> Result<(), ClientError> {
    if json {
        return print_json(reports);
    }
    println!(
        "Proxy {} {verb} {} allowed requests in {} rows.",
        reports.proxy_id,
        reports.allowed,
        reports.rows.len()
    );
    for row in &reports.rows {
        println!(
            "  {}  {}  {:<24} {}",
            row.hour,
            row.key_id,
            text(&row.code),
            row.count
        );
    }
    Ok(())
}

pub fn run_enrollment_tokens(
    client_args: ClientArgs,
    command: EnrollmentTokensCommand,
) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    match command {
        EnrollmentTokensCommand::List => {
            let EnrollmentTokens(list) = client.get("/v1/enrollment-tokens", &[])?;
            if json {
                return print_json(&list);
            }
            if list.enrollment_tokens.is_empty() {
                println!("No enrollment tokens.");
            }
            for token in &list.enrollment_tokens {
                println!(
                    "{}  {}  …{}  enrolled {}  expires {}",
                    token.id,
                    text(&token.name),
                    token.last4,
                    token.enrolled,
                    token.expires_at.as_deref().unwrap_or("never")
                );
            }
        }
        EnrollmentTokensCommand::Create { name, expires_at } => {
            let body = json!({ "name": name, "expires_at": expires_at });
            let NewEnrollmentToken(token) = client.post("/v1/enrollment-tokens", &body)?;
            if json {
                return print_json(&token);
            }
            println!(
                "Created enrollment token {} ({}).",
                token.id,
                text(&token.name)
            );
            println!("token: {}", token.token.as_deref().unwrap_or_default());
            println!("Give it to the proxies as control.enrollment_token; it is not shown again.");
        }
        EnrollmentTokensCommand::Revoke { id } => {
            let Deleted = client.delete(&crate::cli::client::teams::item_path(
                "enrollment-tokens",
                &id,
            ))?;
            if json {
                println!("{}", json!({ "id": id, "revoked": true }));
            } else {
                println!("Revoked enrollment token {id}.");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_table_shows_state_lag_and_failing_reports() {
        let body = json!({"snapshot_version": 9, "proxies": [{
            "id": "prx_a", "name": "edge-1", "labels": {}, "version": "0.3.0",
            "credential": "enrollment", "credential_last4": "abcd", "enrolled_with": "enr_x",
            "first_seen": null, "created_at": "2026-12-07T00:00:00Z",
            "enrolled_at": "2026-12-07T00:00:00Z", "last_seen": "2026-12-07T00:01:00Z",
            "snapshot_version": 7, "lag_versions": 2, "lag_seconds": 31,
            "last_report": {"at": null, "failing_since": "2026-12-07T00:00:30Z"},
            "last_sync": {"at": null, "failing_since": null},
            "state": "live", "revoked_at": null, "later_field": 1
        }]});
        let Fleet(list) = Fleet::from_body(&serde_json::to_vec(&body).unwrap()).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-07T00:03:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let table = proxy_table(&list.proxies, now);
        let line = table.lines().nth(1).unwrap();
        assert!(
            line.starts_with("prx_a") && line.contains("live") && line.contains("2v 31s"),
            "{table}"
        );
        assert!(
            line.contains(" 2m ") && line.contains("failing 2m"),
            "{table}"
        );
    }

    #[test]
    fn labels_are_name_value_pairs() {
        let parsed = labels(&["zone=a".into(), "pod=web-1=x".into()]).unwrap();
        assert_eq!(parsed["pod"], "web-1=x");
        assert!(labels(&["zone".into()]).is_err());
    }
}
