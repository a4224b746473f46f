//! `keygate-control`: the Keygate control service (admin API, snapshot feed for the Envoy
//! filter) and its command-line client.

mod api;
mod app;
mod cli;
mod domain;
mod feed;
mod fleet;
mod server;
mod store;
mod wire;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use cli::args::{Cli, Command, SeedArgs, CLIENT_OPTIONS};
use cli::client;
use std::io::Write;
use std::process::ExitCode;

/// mimalloc, not glibc's allocator: the fleet sync allocates thousands of small buffers per
/// request on the blocking pool's threads, where glibc's per-thread arenas spent a third of the
/// service's CPU (docs/benchmarks.md, "Fleet-wide rate limits").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let result = match cli.command {
        Command::Keys(args) => {
            client::run(cli.client, args.command).map_err(|error| error.to_string())
        }
        Command::Tokens(args) => {
            client::run_tokens(cli.client, args.command).map_err(|error| error.to_string())
        }
        Command::Plans(args) => {
            client::run_plans(cli.client, args.command).map_err(|error| error.to_string())
        }
        Command::Teams(args) => {
            client::run_teams(cli.client, args.command).map_err(|error| error.to_string())
        }
        Command::Webhooks(args) => {
            client::run_webhooks(cli.client, args.command).map_err(|error| error.to_string())
        }
        Command::Audit(args) => {
            client::run_audit(cli.client, args).map_err(|error| error.to_string())
        }
        Command::Usage(args) => {
            client::run_team_usage(cli.client, args).map_err(|error| error.to_string())
        }
        Command::Proxies(args) => {
            client::run_proxies(cli.client, args.command).map_err(|error| error.to_string())
        }
        Command::EnrollmentTokens(args) => client::run_enrollment_tokens(cli.client, args.command)
            .map_err(|error| error.to_string()),
        Command::Serve(args) => refuse_client_options(&matches, "serve")
            .and_then(|()| server::startup::run(*args).map_err(|error| error.to_string())),
        Command::Completion { shell } => {
            refuse_client_options(&matches, "completion").and_then(|()| completion(shell))
        }
        Command::Seed(args) => refuse_client_options(&matches, "seed").and_then(|()| seed(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keygate-control: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `serve --token …` would be silently ignored (the service reads its tokens from the
/// environment), so the client options given on the command line to another command are an
/// error rather than a surprise.
fn refuse_client_options(matches: &ArgMatches, command: &str) -> Result<(), String> {
    let given = matches
        .subcommand_matches(command)
        .into_iter()
        .chain([matches])
        .flat_map(|matches| {
            CLIENT_OPTIONS
                .into_iter()
                .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        })
        .next();
    match given {
        Some(option) => Err(format!(
            "--{} is an option of the keys commands, not of {command}{}",
            option.replace('_', "-"),
            if command == "serve" && option == "token" {
                " (the service reads KEYGATE_ADMIN_TOKEN and KEYGATE_SYNC_TOKEN)"
            } else {
                ""
            }
        )),
        None => Ok(()),
    }
}

/// Prints clap's completion script for `shell`. It is generated into memory first: the
/// generator panics on a write error, and standard output may be a closed pipe.
fn completion(shell: clap_complete::Shell) -> Result<(), String> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "keygate-control", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .map_err(|error| format!("writing the completion script: {error}"))
}

fn seed(args: SeedArgs) -> Result<(), String> {
    let environment = domain::plans::Environment::parse(&args.environment)
        .ok_or_else(|| format!("unknown environment {:?}", args.environment))?;
    let location = args.database.location();
    let store = store::Store::open_location(&location)
        .map_err(|error| format!("cannot open database {}: {error}", location.describe()))?;
    let mut secrets_file = args
        .secrets_out
        .as_ref()
        .map(|path| {
            std::fs::File::create(path)
                .map(std::io::BufWriter::new)
                .map_err(|error| format!("cannot create {}: {error}", path.display()))
        })
        .transpose()?;
    let started = std::time::Instant::now();
    app::seed::seed(
        &store,
        args.count,
        environment,
        secrets_file
            .as_mut()
            .map(|file| file as &mut dyn std::io::Write),
    )
    .map_err(|error| error.to_string())?;
    if let Some(mut file) = secrets_file {
        std::io::Write::flush(&mut file).map_err(|error| format!("writing secrets: {error}"))?;
    }
    println!(
        "seeded {} keys into {} in {:.1}s",
        args.count,
        location.describe(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
