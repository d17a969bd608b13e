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

/// Every subcommand parses the same through [`Cli::parse_args`]'s shortcut as through the
/// whole definition, and what the shortcut cannot take falls through to it.
#[test]
fn parsing_one_subcommand_reads_the_line_as_the_whole_definition_does() {
    let lines: &[&[&str]] = &[
        &["tokdeck", "token", "crm"],
        &["tokdeck", "token", "crm", "--header", "--min-valid", "10m"],
        &["tokdeck", "token", "--vault", "/v.age", "crm", "--no-agent"],
        &["tokdeck", "status", "--json"],
        &["tokdeck", "exec", "crm", "--", "curl", "-s", "x"],
        &["tokdeck", "api", "crm", "/users"],
        &["tokdeck", "exchange", "p", "-Xy_9z"],
        &["tokdeck", "refresh", "--all"],
        &["tokdeck", "agent", "status"],
        &["tokdeck", "vault", "copy", "openbao://h/kv/team"],
        &["tokdeck", "recipients", "list"],
        &["tokdeck", "--vault", "/v.age", "token", "crm"],
        &["tokdeck"],
    ];
    for line in lines {
        let args = os_args(line);
        let whole = Cli::try_parse_from(&args);
        assert!(whole.is_ok(), "{line:?}: {whole:?}");
        let named_first = line.get(1).is_some_and(|word| !word.starts_with('-'));
        assert_eq!(Cli::parse_one(&args).is_some(), named_first, "{line:?}");
        let shortcut = Cli::parse_args(&args);
        assert_eq!(format!("{shortcut:?}"), format!("{whole:?}"), "{line:?}");
    }
    // Help and mistakes are the whole definition's, word for word.
    for line in [
        &["tokdeck", "token", "--help"][..],
        &["tokdeck", "token"],
        &["tokdeck", "token", "crm", "--hedaer"],
        &["tokdeck", "tokn", "crm"],
        &["tokdeck", "help", "token"],
    ] {
        let args = os_args(line);
        let whole = Cli::try_parse_from(&args).unwrap_err();
        let shortcut = Cli::parse_args(&args).unwrap_err();
        assert_eq!(shortcut.kind(), whole.kind(), "{line:?}");
        assert_eq!(shortcut.to_string(), whole.to_string(), "{line:?}");
    }
}

/// The subcommands the shortcut makes from their arguments take the same arguments as in the
/// whole definition, each set the same way.
#[test]
fn subcommands_made_alone_match_the_whole_definition() {
    let arguments = |command: Option<clap::Command>| {
        let mut top = Global::augment_args(clap::Command::new("tokdeck"));
        top = top.subcommand(command.unwrap());
        top.build();
        let sub = top.get_subcommands().next().unwrap();
        // Deferred arguments come after the global ones: the order is not compared.
        let mut arguments: Vec<String> = sub.get_arguments().map(|a| format!("{a:?}")).collect();
        arguments.sort();
        arguments
    };
    for name in ["token", "exec", "status"] {
        let whole = Cli::command().find_subcommand(name).cloned();
        assert_eq!(arguments(Cli::subcommand(name)), arguments(whole), "{name}");
    }
}

/// What the small `tokdeck` executable reads alone, it reads as the whole definition does;
/// anything else (other commands, options first, help, mistakes) it leaves to the whole.
#[test]
fn the_quick_commands_read_alone_as_the_whole_definition_reads_them() {
    let quick: &[&[&str]] = &[
        &["tokdeck", "token", "crm"],
        &["tokdeck", "token", "crm", "--header", "--min-valid", "10m"],
        &["tokdeck", "token", "--vault", "/v.age", "crm", "--no-agent"],
        &["tokdeck", "status"],
        &["tokdeck", "status", "--json", "--warn", "2d"],
        &[
            "tokdeck",
            "exec",
            "crm",
            "--env",
            "API_TOKEN",
            "--",
            "curl",
            "-s",
            "x",
        ],
    ];
    for line in quick {
        let args = os_args(line);
        let whole = Cli::try_parse_from(&args).unwrap();
        let alone = Cli::parse_quick(&args);
        assert_eq!(
            format!("{alone:?}"),
            format!("{:?}", Some(whole)),
            "{line:?}"
        );
    }
    let not_quick: &[&[&str]] = &[
        &["tokdeck"],
        &["tokdeck", "api", "crm", "/users"],
        &["tokdeck", "refresh", "--all"],
        &["tokdeck", "--vault", "/v.age", "token", "crm"],
        &["tokdeck", "token", "--help"],
        &["tokdeck", "token"],
        &["tokdeck", "token", "crm", "--hedaer"],
        &["tokdeck", "status", "--bogus"],
        &["tokdeck", "exec", "crm"],
        &["tokdeck", "tokn", "crm"],
        &["tokdeck", "--version"],
    ];
    for line in not_quick {
        let args = os_args(line);
        assert!(Cli::parse_quick(&args).is_none(), "{line:?}");
    }
}

/// A command line as `main` gets it.
fn os_args(line: &[&str]) -> Vec<std::ffi::OsString> {
    line.iter().map(Into::into).collect()
}
