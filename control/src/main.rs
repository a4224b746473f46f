//! `keygate-control`: the Keygate control service (admin API, snapshot feed for the Envoy
//! filter) and its command-line client.

mod api;
mod cli;
mod client;
mod clock;
mod cursor;
mod feed;
mod plans;
mod quota;
mod secrets;
mod serve_config;
mod served;
mod server;
mod store;
mod usage_range;
mod usage_report;
mod validate;

use clap::Parser;
use cli::{Cli, Command, SeedArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => server::run(args),
        Command::Keys(args) => client::run(*args),
        Command::Seed(args) => seed(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keygate-control: {message}");
            ExitCode::FAILURE
        }
    }
}

fn seed(args: SeedArgs) -> Result<(), String> {
    let environment = plans::Environment::parse(&args.environment)
        .ok_or_else(|| format!("unknown environment {:?}", args.environment))?;
    let store = store::Store::open(&args.db)
        .map_err(|error| format!("cannot open database {}: {error}", args.db.display()))?;
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
    store::seed::seed(
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
        args.db.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
