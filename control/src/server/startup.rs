//! `keygate-control serve`: opens the database, binds, serves until SIGTERM or Ctrl-C.

use crate::api::router::router;
use crate::api::scopes::ScopeDescriptions;
use crate::api::state::AppState;
use crate::app;
use crate::app::oauth::seal::SealingKey;
use crate::app::oauth::{IssueError, OAuthServer, OAuthSettings};
use crate::app::proxies::ProxyRegistry;
use crate::app::scanning_keys::ScanningKeysFile;
use crate::app::usage_queue::UsageQueue;
use crate::cli::args::{ListenerArgs, OAuthArgs, ServeArgs, SEALING_KEY_VAR};
use crate::domain::clock;
use crate::domain::events;
use crate::domain::leaks::LeakPolicy;
use crate::domain::oauth::KeySchedule;
use crate::domain::secrets::TokenDigest;
use crate::feed::versions::HeldPolls;
use crate::fleet::bounds::FleetBounds;
use crate::fleet::redis::RedisLink;
use crate::fleet::FleetCounts;
use crate::server::clock::ClockLimits;
use crate::server::config::{
    bootstrap_enrollment, parse_scopes, resolve_tokens, ADMIN_TOKEN_VAR, ENROLLMENT_TOKEN_VAR,
    SYNC_TOKEN_VAR,
};
use crate::server::console;
use crate::server::error::StartupError;
use crate::server::fleet_bounds;
use crate::server::listener::{self, ConnectionLimits, Listener};
use crate::server::proxy_presence;
use crate::server::tls::{self, CertificateFiles, ReloadingCertificate};
use crate::server::webhook_sender;
use crate::store::usage;
use crate::store::Store;
use axum::Extension;
use ipnet::IpNet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsAcceptor;

/// How often old usage hours are rolled into daily totals (and once at start).
const USAGE_PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// How often the alerts of keys expiring or expired are evaluated (and once at start).
const ALERT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub fn run(args: ServeArgs) -> Result<(), StartupError> {
    let tokens = resolve_tokens(
        std::env::var(ADMIN_TOKEN_VAR).ok(),
        std::env::var(SYNC_TOKEN_VAR).ok(),
        args.dev,
        !args.proxies.no_shared_sync_token,
    )
    .map_err(|error| StartupError::Config(error.to_string()))?;
    let scopes =
        parse_scopes(&args.scopes).map_err(|error| StartupError::Config(error.to_string()))?;
    let descriptions = Arc::new(
        ScopeDescriptions::parse(&args.scope_descriptions, &scopes)
            .map_err(|error| StartupError::Config(error.to_string()))?,
    );
    let location = args.database.location();
    let store = Arc::new(Store::open_location(&location).map_err(|error| {
        StartupError::Database(format!(
            "cannot open database {}: {error}",
            location.describe()
        ))
    })?);
    if tokens.admin_is_dev_default {
        println!("dev mode: admin token is {}", tokens.admin);
    }
    match &tokens.sync {
        Some(sync) if tokens.sync_is_dev_default => {
            println!("dev mode: sync token is {sync}");
        }
        Some(_) => eprintln!(
            "keygate-control: warning: proxies may sync with the shared {SYNC_TOKEN_VAR}, which every proxy holds; \
             give each its own credential (enrollment tokens, docs/security.md \"Proxy identity\") and serve with \
             --no-shared-sync-token. The shared token goes away in a later release."
        ),
        None => println!("proxies: the shared sync token is off; every proxy presents its own credential"),
    }
    let enrollment = bootstrap_enrollment(std::env::var(ENROLLMENT_TOKEN_VAR).ok(), args.dev)
        .map_err(StartupError::Config)?;
    if let Some((token, true)) = &enrollment {
        println!("dev mode: enrollment token is {token}");
    }
    let scanning_keys = args
        .secret_scanning_keys
        .clone()
        .map(|path| ScanningKeysFile::load(path).map(Arc::new))
        .transpose()
        .map_err(|error| StartupError::Config(format!("--secret-scanning-keys: {error}")))?;
    if let (Some(file), Some(path)) = (&scanning_keys, &args.secret_scanning_keys) {
        println!("secret scanning: {}: {}", path.display(), file.summary());
    }
    let oauth = oauth_server(&args.oauth)?;
    let trusted_proxies = parse_trusted_proxies(&args.oauth.trusted_proxies)?;
    let (stop, shutting_down) = watch::channel(false);
    let state = AppState {
        // The last reference stays here, so the store (and PostgreSQL's blocking clients,
        // which must not be dropped on an async worker) is dropped after the runtime stops.
        store: Arc::clone(&store),
        admin_token: Arc::new(TokenDigest::of(&tokens.admin)),
        sync_token: tokens
            .sync
            .as_deref()
            .map(|sync| Arc::new(TokenDigest::of(sync))),
        proxies: Arc::new(ProxyRegistry::new(
            chrono::Duration::from_std(args.proxies.proxy_stale_after)
                .unwrap_or(chrono::Duration::seconds(90)),
            args.proxies.enrollments_per_minute,
            enrollment.map(|(token, _)| TokenDigest::of(&token)),
        )),
        allowed_scopes: scopes.into(),
        shutting_down,
        held_polls: HeldPolls::default(),
        full_snapshot: Default::default(),
        delta_pages: crate::api::state::delta_cache(),
        fleet: Arc::new(FleetCounts::for_store(&store, args.redis_url.is_some())),
        fleet_stats: Arc::default(),
        fleet_bounds: Arc::new(FleetBounds::new(args.max_proxy_rate)),
        usage_queue: Arc::new(UsageQueue::new(args.alerts.settings(), args.max_proxy_rate)),
        alerts: args.alerts.settings(),
        webhook_policy: args.alerts.policy(),
        webhook_wake: Arc::default(),
        scanning_keys,
        leak_policy: LeakPolicy::parse(&args.leaked_key_policy).unwrap_or(LeakPolicy::Revoke),
        oauth,
        oauth_failures: Arc::default(),
        trusted_proxies: trusted_proxies.into(),
    };
    if let Some(server) = &state.oauth {
        // The first signing key exists before any key set is served, so no Envoy caches an
        // empty one.
        let keys = server.check(&store, clock::now()).map_err(|error| {
            let detail = match error {
                IssueError::Internal(detail) => detail,
                IssueError::Refused(error) => error.description,
            };
            StartupError::Config(format!("OAuth signing keys: {detail}"))
        })?;
        println!(
            "oauth: issuer {}, {} signing key(s) published, tokens live {} s",
            server.settings.issuer,
            keys.len(),
            server.settings.schedule.token_lifetime.num_seconds()
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| StartupError::Io(format!("cannot start the async runtime: {error}")))?;
    let limits = connection_limits(&args.connections);
    let certificate = match (&args.connections.tls_cert, &args.connections.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            ReloadingCertificate::load(CertificateFiles {
                cert: cert.clone(),
                key: key.clone(),
            })
            .map_err(|error| StartupError::Config(format!("--tls-cert/--tls-key: {error}")))?,
        )),
        _ => None,
    };
    let tls = certificate
        .as_ref()
        .map(|certificate| tls::server_config(Arc::clone(certificate)).map(TlsAcceptor::from))
        .transpose()
        .map_err(|error| StartupError::Config(format!("TLS settings: {error}")))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    runtime.block_on(async move {
        if let Some(url) = &args.redis_url {
            // Ends with the process; the flushes are idempotent, so none is owed at exit.
            RedisLink::spawn_thread(
                url,
                Arc::clone(&state.fleet_stats),
                Arc::clone(&state.fleet),
            )
            .map_err(StartupError::Config)?;
        }
        let tcp = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|error| {
                StartupError::Io(format!("cannot listen on {}: {error}", args.listen))
            })?;
        let address = tcp
            .local_addr()
            .map_err(|error| StartupError::Io(format!("cannot read the bound address: {error}")))?;
        println!(
            "keygate-control listening on {scheme}://{address} (db: {})",
            location.describe()
        );
        if let Some(certificate) = &certificate {
            println!(
                "tls: serving {} (sha256 {})",
                args.connections
                    .tls_cert
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display(),
                certificate.fingerprint()
            );
        }
        state.full_snapshot.warm_up(&state.store);
        let shutting_down = state.shutting_down.clone();
        let console_server = match &args.console_listen {
            Some(address) => {
                let api = router(state.clone()).layer(Extension(Arc::clone(&descriptions)));
                let server =
                    console::start(address, api, limits, tls.clone(), shutting_down.clone());
                Some(server.await?)
            }
            None => None,
        };
        let pruning = tokio::spawn(prune_usage_hourly(
            Arc::clone(&state.store),
            args.retention.usage_retention_days,
            args.retention.event_retention_days,
            args.retention.events_per_key,
        ));
        let sending = tokio::spawn(webhook_sender::run(
            Arc::clone(&state.store),
            args.alerts.sender(),
            Arc::clone(&state.webhook_wake),
            shutting_down.clone(),
        ));
        let sweeping = tokio::spawn(sweep_alerts(Arc::clone(&state.store)));
        let bounding = tokio::spawn(fleet_bounds::keep_current(
            Arc::clone(&state.store),
            Arc::clone(&state.fleet_bounds),
        ));
        let watching = tokio::spawn(proxy_presence::watch_versions(
            Arc::clone(&state.store),
            Arc::clone(&state.proxies),
        ));
        let flushing = tokio::spawn(proxy_presence::keep_flushing(
            Arc::clone(&state.store),
            Arc::clone(&state.proxies),
            shutting_down.clone(),
        ));
        let reloading = certificate.map(|certificate| {
            tokio::spawn(tls::keep_reloading(certificate, shutting_down.clone()))
        });
        let stopping = tokio::spawn(async move {
            shutdown_signal().await;
            println!("keygate-control shutting down");
            // Stops the listeners and wakes long polls so in-flight requests finish promptly.
            stop.send_replace(true);
        });
        let api = Listener {
            name: "API",
            tcp,
            router: router(state).layer(Extension(descriptions)),
            limits,
            tls,
        };
        listener::serve(api, shutting_down).await;
        pruning.abort();
        sweeping.abort();
        bounding.abort();
        watching.abort();
        // Writes what was seen last before the process ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), flushing).await;
        stopping.abort();
        // Lets an attempt in flight record its outcome; its lease would otherwise lapse and
        // another replica send it again (allowed, but avoidable).
        let _ = tokio::time::timeout(Duration::from_secs(15), sending).await;
        if let Some(reloading) = reloading {
            reloading.abort();
        }
        if let Some(console_server) = console_server {
            console_server.await.map_err(|error| {
                StartupError::Serve(format!("console server task failed: {error}"))
            })?;
        }
        Ok::<(), StartupError>(())
    })?;
    drop(runtime);
    drop(store);
    println!("keygate-control stopped");
    Ok(())
}

/// The flags' limits, for both listeners.
fn connection_limits(flags: &ListenerArgs) -> ConnectionLimits {
    ConnectionLimits {
        clock: ClockLimits {
            header_timeout: flags.header_timeout,
            idle_timeout: flags.idle_timeout,
        },
        body_timeout: flags.body_timeout,
        max_connections: flags.max_connections as usize,
    }
}

/// Keeps `retention_days` days of hourly usage (rolls older hours into daily totals) and
/// `event_days` days of events, at most `events_per_key` a key: now and then every hour. A
/// failed run is logged and retried at the next.
async fn prune_usage_hourly(
    store: Arc<Store>,
    retention_days: u32,
    event_days: u32,
    events_per_key: u32,
) {
    let mut every_hour = tokio::time::interval(USAGE_PRUNE_INTERVAL);
    every_hour.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every_hour.tick().await;
        let run = store
            .run_blocking(move |store| {
                let now = clock::now();
                app::usage::prune(
                    store,
                    usage::retention_cutoff(now, retention_days),
                    now,
                    events::retention_cutoff_ms(now, event_days),
                    events_per_key,
                )
            })
            .await;
        match run {
            Ok(Ok(pruned)) if pruned.hours > 0 || pruned.batches > 0 || pruned.events > 0 => {
                println!(
                    "usage retention: rolled {} hourly rows into daily totals, forgot {} batch \
                     ids and {} events",
                    pruned.hours, pruned.batches, pruned.events
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => eprintln!("usage retention failed: {error}"),
            Err(error) => eprintln!("usage retention task failed: {error}"),
        }
    }
}

/// Raises the alerts time alone causes (keys expiring or expired) once a minute; a failed run
/// is logged and retried at the next.
async fn sweep_alerts(store: Arc<Store>) {
    let mut every_minute = tokio::time::interval(ALERT_SWEEP_INTERVAL);
    every_minute.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        every_minute.tick().await;
        let run = store
            .run_blocking(|store| {
                let started = std::time::Instant::now();
                app::alerts::sweep(store, clock::now()).map(|swept| (swept, started.elapsed()))
            })
            .await;
        match run {
            // The first run's line says what a sweep costs here (bench/alerts.py reads it).
            Ok(Ok((swept, took))) if first || swept.raised > 0 => {
                println!(
                    "alert sweep: {} keys near expiry checked, {} alerts raised, {:.1} ms",
                    swept.checked,
                    swept.raised,
                    took.as_secs_f64() * 1000.0
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => eprintln!("alert sweep failed: {error}"),
            Err(error) => eprintln!("alert sweep task failed: {error}"),
        }
        first = false;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The authorization server, when `KEYGATE_OAUTH_SEALING_KEY` is set.
fn oauth_server(args: &OAuthArgs) -> Result<Option<Arc<OAuthServer>>, StartupError> {
    let Some(sealing) = std::env::var(SEALING_KEY_VAR)
        .ok()
        .filter(|v| !v.is_empty())
    else {
        println!("oauth: off ({SEALING_KEY_VAR} is not set)");
        return Ok(None);
    };
    let sealing = SealingKey::from_base64(&sealing)
        .map_err(|error| StartupError::Config(format!("{SEALING_KEY_VAR}: {error}")))?;
    let issuer = args.oauth_issuer.trim_end_matches('/').to_string();
    let parsed = url::Url::parse(&issuer)
        .map_err(|error| StartupError::Config(format!("--oauth-issuer {issuer:?}: {error}")))?;
    // No path: the endpoints and RFC 8414's metadata are served at the root, where the shipped
    // Envoy routes them.
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || parsed.path() != "/"
    {
        return Err(StartupError::Config(format!(
            "--oauth-issuer {issuer:?}: an http(s) origin without path, query or fragment (RFC 8414)"
        )));
    }
    let duration = |value: std::time::Duration| {
        chrono::Duration::from_std(value).unwrap_or(chrono::Duration::MAX)
    };
    let settings = OAuthSettings {
        audience: args
            .oauth_audience
            .clone()
            .unwrap_or_else(|| issuer.clone()),
        issuer,
        schedule: KeySchedule {
            token_lifetime: duration(args.oauth_token_lifetime),
            rotation: duration(args.oauth_key_rotation),
            publish_ahead: duration(args.oauth_publish_ahead),
        },
    };
    Ok(Some(Arc::new(OAuthServer::new(settings, sealing))))
}

fn parse_trusted_proxies(entries: &[String]) -> Result<Vec<IpNet>, StartupError> {
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    StartupError::Config(format!(
                        "--trusted-proxies: {entry:?} is not an address or CIDR"
                    ))
                })
        })
        .collect()
}
