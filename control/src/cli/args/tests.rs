use super::*;
use clap::CommandFactory;

/// Every option and argument of every command, hidden ones included, with the command's path.
fn undocumented(command: &clap::Command, path: &str, found: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        if arg.get_help().is_none() {
            found.push(format!("{path} {id}"));
        }
    }
    for sub in command.get_subcommands() {
        undocumented(sub, &format!("{path} {}", sub.get_name()), found);
    }
}

#[test]
fn the_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_flag_and_argument_has_help() {
    let mut found = Vec::new();
    undocumented(&Cli::command(), "keygate-control", &mut found);
    assert!(found.is_empty(), "no help text: {found:?}");
}

#[test]
fn client_options_go_before_or_after_the_subcommand() {
    for args in [
        &["keygate-control", "--json", "--url", "h:1", "keys", "list"][..],
        &["keygate-control", "keys", "--json", "--url", "h:1", "list"],
        &["keygate-control", "keys", "list", "--json", "--url", "h:1"],
    ] {
        let cli = Cli::try_parse_from(args).unwrap();
        assert!(cli.client.json, "{args:?}");
        assert_eq!(cli.client.url, "h:1", "{args:?}");
    }
}

/// Arguments of subcommands whose id is a global client option's: clap lets the subcommand's
/// value overwrite the global one (a webhook's URL once replaced the service's `--url`).
fn shadowing(command: &clap::Command, path: &str, top: bool, found: &mut Vec<String>) {
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if !top && !arg.is_global_set() && CLIENT_OPTIONS.contains(&id) {
            found.push(format!("{path} {id}"));
        }
    }
    for sub in command.get_subcommands() {
        shadowing(sub, &format!("{path} {}", sub.get_name()), false, found);
    }
}

#[test]
fn no_argument_shadows_a_client_option() {
    let mut found = Vec::new();
    shadowing(&Cli::command(), "keygate-control", true, &mut found);
    assert!(found.is_empty(), "shadowing a client option: {found:?}");
}
