//! Sends webhook deliveries: each replica leases what is due from the outbox (so one replica
//! sends each), posts it signed as the Standard Webhooks specification says, and records the
//! outcome. Runs every second and whenever an API call queued something; a replica killed mid-
//! delivery leaves its lease to lapse, and another replica sends that delivery again (the same
//! `webhook-id`), so a delivery is lost never and duplicated at most once per lapsed lease.

use crate::app::webhook_dns::resolve_within;
use crate::app::webhooks;
use crate::domain::clock;
use crate::domain::webhook_url::check_url;
use crate::domain::webhooks::{
    excerpt, signature_header, AttemptResult, LeasedDelivery, SenderSettings,
};
use crate::store::Store;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// Deliveries one replica sends at once.
const BATCH: usize = 16;
/// Bytes of a failed answer's body read for the delivery log's excerpt.
const READ_ERROR_BYTES: u64 = 1024;

/// Sends due deliveries until `shutting_down` turns true.
pub async fn run(
    store: Arc<Store>,
    settings: SenderSettings,
    wake: Arc<Notify>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let mut every_second = tokio::time::interval(std::time::Duration::from_secs(1));
    every_second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every_second.tick() => {}
            () = wake.notified() => {}
            _ = shutting_down.changed() => {}
        }
        if *shutting_down.borrow() {
            return;
        }
        // Keep sending while full batches come back (a backlog), then wait again.
        loop {
            let sent = send_due(&store, settings).await;
            if sent < BATCH || *shutting_down.borrow() {
                break;
            }
        }
    }
}

/// Leases one batch, sends it concurrently, records each outcome; returns the batch's size.
async fn send_due(store: &Arc<Store>, settings: SenderSettings) -> usize {
    let lease = settings.lease();
    let leased = store
        .run_blocking(move |store| webhooks::lease_due(store, clock::now(), lease, BATCH))
        .await;
    let leased = match leased {
        Ok(Ok(leased)) => leased,
        Ok(Err(error)) => {
            eprintln!("webhooks: cannot read due deliveries: {error}");
            return 0;
        }
        Err(error) => {
            eprintln!("webhooks: delivery task failed: {error}");
            return 0;
        }
    };
    let count = leased.len();
    let mut sending = JoinSet::new();
    for delivery in leased {
        let store = Arc::clone(store);
        sending.spawn_blocking(move || {
            let result = attempt(&delivery, settings);
            let recorded = webhooks::record_attempt(
                &store,
                &delivery,
                &result,
                settings.retry_base,
                clock::now(),
            );
            if let Err(error) = recorded {
                eprintln!("webhooks: cannot record a delivery attempt: {error}");
            }
        });
    }
    while sending.join_next().await.is_some() {}
    count
}

/// The HTTP client for one attempt: it connects only to `addresses` (resolved and checked
/// already), follows no redirect (a redirect could point anywhere) and bounds every phase.
fn agent(addresses: Vec<SocketAddr>, timeout: std::time::Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .resolver(move |_: &str| Ok(addresses.clone()))
        .timeout_connect(timeout)
        .timeout(timeout)
        .redirects(0)
        .user_agent(concat!("keygate-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One attempt: the URL and every address of its host checked again, the body signed with the
/// endpoint's secrets, posted. Takes at most twice the timeout (lookup, then the request).
fn attempt(delivery: &LeasedDelivery, settings: SenderSettings) -> AttemptResult {
    let failed = |status: Option<u16>, error: String| AttemptResult::Failed { status, error };
    let url = match check_url(&delivery.webhook.url, settings.policy) {
        Ok(url) => url,
        Err(error) => return failed(None, format!("url refused: {error}")),
    };
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses =
        match resolve_within(format!("{host}:{port}"), settings.policy, settings.timeout) {
            Ok(addresses) => addresses,
            Err(error) => return failed(None, format!("address refused: {error}")),
        };
    let agent = agent(addresses, settings.timeout);
    let now = clock::now();
    let timestamp = now.timestamp();
    let secrets = delivery.webhook.signing_secrets(now);
    let body = delivery.body.as_bytes();
    let Some(signature) = signature_header(&secrets, &delivery.event_id, timestamp, body) else {
        return failed(None, "the endpoint's signing secret is unreadable".into());
    };
    let sent = agent
        .post(&delivery.webhook.url)
        .set("content-type", "application/json")
        .set("webhook-id", &delivery.event_id)
        .set("webhook-timestamp", &timestamp.to_string())
        .set("webhook-signature", &signature)
        .send_bytes(body);
    match sent {
        Ok(answer) if (200..300).contains(&answer.status()) => AttemptResult::Delivered {
            status: answer.status(),
        },
        Ok(answer) => {
            let status = answer.status();
            failed(
                Some(status),
                format!("answered {status}: {}", read_excerpt(answer)),
            )
        }
        Err(ureq::Error::Status(status, answer)) => failed(
            Some(status),
            format!("answered {status}: {}", read_excerpt(answer)),
        ),
        Err(ureq::Error::Transport(transport)) => failed(None, excerpt(&transport.to_string())),
    }
}

fn read_excerpt(answer: ureq::Response) -> String {
    let mut text = String::new();
    let mut bytes = Vec::new();
    if answer
        .into_reader()
        .take(READ_ERROR_BYTES)
        .read_to_end(&mut bytes)
        .is_ok()
    {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    excerpt(&text)
}
