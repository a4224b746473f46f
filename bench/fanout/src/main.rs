//! A simulated proxy fleet for `make bench-fanout` (bench/fanout.py, docs/benchmarks.md):
//! thousands of snapshot long polls held on the control replicas while keys are revoked
//! (`fanout`), or a herd of proxies loading a full snapshot at once (`herd`). One connection per
//! simulated proxy; prints one JSON object.
//!
//! Usage:
//!   keygate-bench-fanout fanout --urls URL[,URL…] --proxies N --revoke ID[,ID…]
//!       [--wait 30] [--page-size 10000] [--pause-ms 1000] [--timeout-s 20]
//!       [--pids PID[,PID…]] [--ticks 100] [--threads 2]
//!   keygate-bench-fanout herd --urls URL[,URL…] --proxies N [--spread-ms 1000]
//!       [--page-size 10000] [--pids …] [--ticks 100] [--threads 2]
//!   keygate-bench-fanout sync --urls URL[,URL…] --envoys N --start-ms UNIX_MS [--keys 1000]
//!       [--shared 100] [--hot 10] [--salt HEX] [--routing sticky|alternate]
//!       [--warmup-ms 5000] [--seconds 30] [--threads 2]
//!       (fleet rate-limit syncs, for bench/fleet_sync.py)
//!
//! The tokens come from the environment, never the command line: KEYGATE_SYNC_TOKEN (the
//! proxies' and the counters') and KEYGATE_ADMIN_TOKEN (the revocations).

mod client;
mod fanout;
mod herd;
mod measure;
mod sync;

use client::Replica;
use std::collections::HashMap;
use std::time::Duration;

const USAGE: &str = "usage: keygate-bench-fanout fanout|herd|sync --urls URL[,URL…] --proxies N \
                     [--revoke ID[,ID…]] (see the source's header)";

/// The flags after the mode, as `--name value` pairs.
struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: impl Iterator<Item = String>) -> Result<Flags, String> {
        let mut flags = HashMap::new();
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("{flag}: expected --flag value"))?;
            let value = args
                .next()
                .ok_or_else(|| format!("{flag}: missing value"))?;
            flags.insert(name.to_string(), value);
        }
        Ok(Flags(flags))
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|e| format!("--{name}: {e}")),
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.text(name)
            .map(|text| {
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self.0.keys().find(|name| !known.contains(&name.as_str())) {
            Some(unknown) => Err(format!("unknown flag --{unknown}")),
            None => Ok(()),
        }
    }

    fn replicas(&self) -> Result<Vec<Replica>, String> {
        let replicas = self
            .list("urls")
            .iter()
            .map(|url| Replica::parse(url))
            .collect::<Result<Vec<_>, _>>()?;
        if replicas.is_empty() {
            return Err("--urls is required".into());
        }
        Ok(replicas)
    }

    fn pids(&self) -> Result<Vec<u32>, String> {
        self.list("pids")
            .iter()
            .map(|pid| pid.parse().map_err(|e| format!("--pids: {e}")))
            .collect()
    }
}

fn token(variable: &str) -> Result<String, String> {
    std::env::var(variable).map_err(|_| format!("{variable} is not set"))
}

/// What to run, read from the command line before the runtime starts.
enum Run {
    Fanout(fanout::Settings),
    Herd(herd::Settings),
    Sync(sync::Settings),
}

fn parse() -> Result<(Run, usize), String> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or(USAGE)?;
    let flags = Flags::parse(args)?;
    let threads = flags.number("threads", 2_usize)?;
    let shared = ["urls", "proxies", "page-size", "pids", "ticks", "threads"];
    let run = match mode.as_str() {
        "fanout" => {
            flags.check_known(
                &[&shared[..], &["revoke", "wait", "pause-ms", "timeout-s"]].concat(),
            )?;
            let revoke = flags.list("revoke");
            if revoke.is_empty() {
                return Err("--revoke: at least one key id".into());
            }
            Run::Fanout(fanout::Settings {
                replicas: flags.replicas()?,
                proxies: flags.number("proxies", 100)?,
                revoke,
                wait_seconds: flags.number("wait", 30)?,
                page_size: flags.number("page-size", 10_000)?,
                pause: Duration::from_millis(flags.number("pause-ms", 1_000)?),
                deliver_timeout: Duration::from_secs(flags.number("timeout-s", 20)?),
                replica_pids: flags.pids()?,
                ticks_per_second: flags.number("ticks", 100.0)?,
                sync_token: token("KEYGATE_SYNC_TOKEN")?,
                admin_token: token("KEYGATE_ADMIN_TOKEN")?,
            })
        }
        "herd" => {
            flags.check_known(&[&shared[..], &["spread-ms"]].concat())?;
            Run::Herd(herd::Settings {
                replicas: flags.replicas()?,
                proxies: flags.number("proxies", 1_000)?,
                spread: Duration::from_millis(flags.number("spread-ms", 1_000)?),
                page_size: flags.number("page-size", 10_000)?,
                replica_pids: flags.pids()?,
                ticks_per_second: flags.number("ticks", 100.0)?,
                sync_token: token("KEYGATE_SYNC_TOKEN")?,
            })
        }
        "sync" => {
            flags.check_known(&[
                "urls",
                "envoys",
                "keys",
                "shared",
                "hot",
                "salt",
                "routing",
                "start-ms",
                "warmup-ms",
                "seconds",
                "threads",
            ])?;
            let routing = flags.text("routing").unwrap_or("sticky");
            if routing != "sticky" && routing != "alternate" {
                return Err("--routing: sticky or alternate".into());
            }
            let salt = flags.text("salt").unwrap_or("0");
            Run::Sync(sync::Settings {
                replicas: flags.replicas()?,
                envoys: flags.number("envoys", 50)?,
                keys: flags.number("keys", 1_000)?,
                shared: flags.number("shared", 100)?,
                hot: flags.number("hot", 10)?,
                salt: u64::from_str_radix(salt, 16).map_err(|e| format!("--salt: {e}"))?,
                alternate: routing == "alternate",
                start_ms: flags.number("start-ms", 0)?,
                warmup: Duration::from_millis(flags.number("warmup-ms", 5_000)?),
                measured: Duration::from_secs(flags.number("seconds", 30)?),
                sync_token: token("KEYGATE_SYNC_TOKEN")?,
            })
        }
        _ => return Err(USAGE.into()),
    };
    Ok((run, threads.max(1)))
}

fn main() {
    let (run, threads) = match parse() {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("keygate-bench-fanout: {error}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keygate-bench-fanout: runtime: {error}");
            std::process::exit(1);
        }
    };
    let report = runtime.block_on(async {
        match run {
            Run::Fanout(settings) => fanout::run(settings).await,
            Run::Herd(settings) => herd::run(settings).await,
            Run::Sync(settings) => sync::run(settings).await,
        }
    });
    // The simulated proxies are still polling: the runtime is dropped without waiting for them.
    runtime.shutdown_background();
    match report {
        Ok(report) => println!("{report}"),
        Err(error) => {
            eprintln!("keygate-bench-fanout: {error}");
            std::process::exit(1);
        }
    }
}
