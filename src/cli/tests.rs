//! The command line as clap reads it: consistency, values that begin with a dash, help.

use super::*;
use clap::CommandFactory;

#[test]
fn definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn refresh_needs_a_name_or_all() {
    assert!(Cli::try_parse_from(["tokdeck", "refresh"]).is_err());
    assert!(Cli::try_parse_from(["tokdeck", "refresh", "--all"]).is_ok());
    assert!(Cli::try_parse_from(["tokdeck", "refresh", "a", "--all"]).is_err());
}

#[test]
fn a_code_that_begins_with_a_dash_is_a_code() {
    let cli = Cli::try_parse_from(["tokdeck", "exchange", "p", "-Xy_9z"]).unwrap();
    assert!(matches!(cli.command, Some(Command::Exchange { code, .. }) if code == "-Xy_9z"));
    let stdin = Cli::try_parse_from(["tokdeck", "exchange", "p", "-"]).unwrap();
    assert!(matches!(stdin.command, Some(Command::Exchange { code, .. }) if code == "-"));
}

#[test]
fn a_client_id_or_note_that_begins_with_a_dash_is_a_value() {
    let line = [
        "tokdeck",
        "add",
        "p",
        "--client-id",
        "-Kx_9",
        "--redirect-uri",
        "urn:x",
        "--notes",
        "- todo",
    ];
    let cli = Cli::try_parse_from(line).unwrap();
    let Some(Command::Add(add)) = cli.command else {
        panic!("not add")
    };
    assert_eq!(
        (add.client_id.as_str(), add.notes.as_str()),
        ("-Kx_9", "- todo")
    );
    let edit = Cli::try_parse_from(["tokdeck", "edit", "p", "--client-id", "-Q"]).unwrap();
    assert!(matches!(edit.command, Some(Command::Edit(e)) if e.client_id.as_deref() == Some("-Q")));
}

#[test]
fn bad_duration_is_explained() {
    let err = Cli::try_parse_from(["tokdeck", "status", "--warn", "soon"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("1d, 12h, 30m"), "{err}");
}

#[test]
fn help_says_how_to_open_the_app_and_keeps_global_options_apart() {
    let root = Cli::command().render_help().to_string();
    assert!(
        root.contains("no command opens the full-screen app"),
        "{root}"
    );
    assert!(root.contains("30s, 30m, 12h, 1d"), "{root}");
    let mut cmd = Cli::command();
    // Global options reach subcommands when the command is built, as at run time.
    cmd.build();
    let add = cmd
        .find_subcommand_mut("add")
        .map(|c| c.render_help().to_string())
        .unwrap_or_default();
    let (own, global) = add.split_once("Global options:").unwrap_or((&add, ""));
    assert!(
        own.contains("--client-id") && !own.contains("--vault"),
        "{add}"
    );
    assert!(global.contains("--vault"), "{add}");
}
