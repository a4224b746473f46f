//! `keygate-control webhooks …`: endpoints that receive alerts, and their delivery logs.

use crate::cli::args::{ClientArgs, WebhooksCommand};
use crate::cli::client::answers::{json as json_body, Deleted, Reply};
use crate::cli::client::commands::{connect, print_json};
use crate::cli::client::error::ClientError;
use crate::cli::client::table::{column, render, text, Fit};
use crate::cli::client::teams::item_path;
use crate::wire::webhooks::{DeliveryList, TestQueued, WebhookList, WebhookView};
use serde_json::{json, Map, Value};

/// An endpoint created by `POST /v1/webhooks`, with its secret.
pub struct NewWebhook(pub WebhookView);

impl Reply for WebhookView {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a webhook");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

impl Reply for NewWebhook {
    const STATUS: u16 = 201;
    const BODY: Option<&'static str> = Some("a new webhook");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body).map(NewWebhook)
    }
}

impl Reply for WebhookList {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a list of webhooks");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

impl Reply for DeliveryList {
    const STATUS: u16 = 200;
    const BODY: Option<&'static str> = Some("a delivery log");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

impl Reply for TestQueued {
    const STATUS: u16 = 202;
    const BODY: Option<&'static str> = Some("a queued test event");
    fn from_body(body: &[u8]) -> Result<Self, String> {
        json_body(body)
    }
}

pub fn webhook_table(webhooks: &[WebhookView]) -> String {
    let rows: Vec<Vec<String>> = webhooks
        .iter()
        .map(|hook| {
            vec![
                hook.id.clone(),
                if hook.enabled { "on" } else { "off" }.into(),
                hook.team.as_deref().map_or("-".into(), text),
                text(&hook.events.join(",")),
                text(&hook.url),
            ]
        })
        .collect();
    let columns = [
        column("ID", Fit::Keep),
        column("ON", Fit::Keep),
        column("TEAM", Fit::Truncate),
        column("EVENTS", Fit::Wrap),
        column("URL", Fit::Truncate),
    ];
    render(&columns, &rows, true)
}

pub fn delivery_table(log: &DeliveryList) -> String {
    let rows: Vec<Vec<String>> = log
        .deliveries
        .iter()
        .map(|delivery| {
            vec![
                delivery.created_at.clone(),
                delivery.event_type.clone(),
                delivery.status.clone(),
                delivery.attempts.to_string(),
                delivery
                    .last_status
                    .map_or("-".into(), |status| status.to_string()),
                delivery.last_error.as_deref().map_or("-".into(), text),
            ]
        })
        .collect();
    let columns = [
        column("CREATED", Fit::Keep),
        column("TYPE", Fit::Keep),
        column("STATUS", Fit::Keep),
        column("TRIES", Fit::Keep),
        column("LAST", Fit::Keep),
        column("ERROR", Fit::Truncate),
    ];
    render(&columns, &rows, true)
}

fn print_webhook(hook: &WebhookView, json: bool, verb: &str) -> Result<(), ClientError> {
    if json {
        return print_json(hook);
    }
    println!("{verb} webhook {}.", hook.id);
    println!("{}", webhook_table(std::slice::from_ref(hook)));
    if let Some(reason) = &hook.disabled_reason {
        println!("Disabled: {}", text(reason));
    }
    if let Some(secret) = &hook.secret {
        println!("Signing secret (shown once; verify deliveries with it): {secret}");
    }
    Ok(())
}

pub fn run_webhooks(client_args: ClientArgs, command: WebhooksCommand) -> Result<(), ClientError> {
    let (client, json) = connect(client_args)?;
    match command {
        WebhooksCommand::List => {
            let list: WebhookList = client.get("/v1/webhooks", &[])?;
            if json {
                print_json(&list)?;
            } else if list.webhooks.is_empty() {
                println!("No webhooks.");
            } else {
                println!("{}", webhook_table(&list.webhooks));
            }
        }
        WebhooksCommand::Show { id } => {
            let hook: WebhookView = client.get(&item_path("webhooks", &id), &[])?;
            print_webhook(&hook, json, "Showing")?;
        }
        WebhooksCommand::Create {
            endpoint,
            events,
            team,
            description,
        } => {
            let body = json!({
                "url": endpoint, "events": events, "team": team,
                "description": description.unwrap_or_default(),
            });
            let NewWebhook(hook) = client.post("/v1/webhooks", &body)?;
            print_webhook(&hook, json, "Created")?;
        }
        WebhooksCommand::Update {
            id,
            endpoint,
            events,
            description,
            enable,
            disable,
        } => {
            let mut body = Map::new();
            if let Some(endpoint) = endpoint {
                body.insert("url".into(), Value::from(endpoint));
            }
            if !events.is_empty() {
                body.insert("events".into(), Value::from(events));
            }
            if let Some(description) = description {
                body.insert("description".into(), Value::from(description));
            }
            if enable || disable {
                body.insert("enabled".into(), Value::from(enable));
            }
            if body.is_empty() {
                return Err(ClientError::Usage(
                    "nothing to change: give --endpoint, --event, --description, --enable or --disable"
                        .into(),
                ));
            }
            let hook: WebhookView =
                client.patch(&item_path("webhooks", &id), &Value::Object(body))?;
            print_webhook(&hook, json, "Updated")?;
        }
        WebhooksCommand::Delete { id } => {
            let Deleted = client.delete(&item_path("webhooks", &id))?;
            if json {
                println!("{}", json!({ "id": id, "deleted": true }));
            } else {
                println!("Deleted webhook {id}.");
            }
        }
        WebhooksCommand::RotateSecret { id, grace_seconds } => {
            let path = format!("{}/rotate-secret", item_path("webhooks", &id));
            let hook: WebhookView = client.post(&path, &json!({"grace_seconds": grace_seconds}))?;
            print_webhook(&hook, json, "Rotated the secret of")?;
        }
        WebhooksCommand::Test { id } => {
            let path = format!("{}/test", item_path("webhooks", &id));
            let queued: TestQueued = client.post(&path, &json!({}))?;
            if json {
                print_json(&queued)?;
            } else {
                println!(
                    "Queued test event {} (see `webhooks deliveries {id}`).",
                    queued.event_id
                );
            }
        }
        WebhooksCommand::Deliveries { id, limit } => {
            let path = format!("{}/deliveries", item_path("webhooks", &id));
            let log: DeliveryList = client.get(&path, &[("limit", limit.to_string())])?;
            if json {
                print_json(&log)?;
            } else if log.deliveries.is_empty() {
                println!("No deliveries.");
            } else {
                println!("{}", delivery_table(&log));
            }
        }
    }
    Ok(())
}
