//! The two executables: `tokdeck`, small, answers `token`, `exec` and `status` from a running
//! agent by itself, and hands every other command line to `tokdeck-core`, the whole program,
//! beside it; with a clear error when that is missing.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::path::{Path, PathBuf};

use common::running::Agent;
use common::{Env, MockServer, assert_one_line_error, bin, stderr, stdout};

/// A copy of `tokdeck` in a folder of its own: nothing it hands over can start.
fn alone(env: &Env) -> PathBuf {
    let dir = env.home().join("alone");
    std::fs::create_dir(&dir).unwrap();
    let front = dir.join("tokdeck");
    std::fs::copy(bin(), &front).unwrap();
    front
}

/// Runs the copy `program`. Another test's thread may fork while the copy's file is still
/// open for writing; its child holds the descriptor until it execs, and starting the copy
/// meanwhile fails with "text file busy". That passes within moments: tried again, boundedly.
fn run(env: &Env, program: &Path, args: &[&str]) -> std::process::Output {
    let mut tries = 0;
    loop {
        match env.command_of(program, args).output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

#[test]
fn a_running_agent_answers_token_exec_and_status_without_the_whole_program() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let _agent = Agent::start(&env, &[]);
    let access = server.last_access_token().unwrap();
    let front = alone(&env);

    let out = run(&env, &front, &["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), access);
    let out = run(
        &env,
        &front,
        &["token", "p", "--header", "--min-valid", "1m"],
    );
    assert_eq!(stdout(&out), format!("Authorization: Bearer {access}\n"));
    let out = run(
        &env,
        &front,
        &[
            "exec",
            "p",
            "--",
            "sh",
            "-c",
            "printf %s \"$TOKDECK_ACCESS_TOKEN\"",
        ],
    );
    assert_eq!(stdout(&out), access, "{}", stderr(&out));
    let out = run(&env, &front, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"name\": \"p\""), "{}", stdout(&out));

    // The agent's refusal is the answer, with the whole program's message and exit code.
    let out = run(&env, &front, &["token", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_error(&out, "no profile named 'nope'");
    // With the closest name, from the agent as from the vault.
    let out = run(&env, &front, &["token", "pp"]);
    assert_one_line_error(&out, "did you mean 'p'?");

    // Anything else is the whole program's, and it is not there.
    for args in [&["--version"][..], &["refresh", "p"], &["token"]] {
        let out = run(&env, &front, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_one_line_error(&out, "cannot start");
        assert!(
            stderr(&out).contains(&front.with_file_name("tokdeck-core").display().to_string())
                && stderr(&out).contains("install it beside tokdeck"),
            "{}",
            stderr(&out)
        );
    }
    let agent_off = |args: &[&str]| {
        env.command_of(&front, args)
            .env("TOKDECK_AGENT", "off")
            .output()
            .unwrap()
    };
    // A monitor reads a `status` that cannot run as "unknown".
    let out = agent_off(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert_one_line_error(&out, "cannot start");
    // So is the work when the agent is switched off.
    assert_one_line_error(&agent_off(&["token", "p"]), "cannot start");
}

#[test]
fn handed_over_the_whole_program_answers_under_the_name_typed() {
    let env = Env::empty();
    let dir = env.home().join("bin");
    std::fs::create_dir(&dir).unwrap();
    let link = dir.join("tokdeck");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let out = run(&env, &link, &["--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("tokdeck "), "{}", stdout(&out));
    // A mistake is explained by the whole program, under the name the user typed.
    let out = run(&env, &link, &["token"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Usage: tokdeck token"),
        "{}",
        stderr(&out)
    );
    let out = run(&env, &link, &["status", "--bogus"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // With no agent, the work is done by the whole program, which opens the vault.
    assert!(run(&env, &link, &["init"]).status.success());
    let out = run(&env, &link, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no profiles yet"), "{}", stdout(&out));
}

/// What the loader maps of an ELF executable: the file sizes of its `PT_LOAD` segments (debug
/// information, which a test build carries in bulk, is not loaded).
fn loaded_bytes(path: &str) -> u64 {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "{path} is not an ELF file");
    let u16_at = |at: usize| u64::from(u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()));
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    let (table, size, count) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..count)
        .map(|i| (table + i * size) as usize)
        .filter(|&header| elf[header..header + 4] == 1u32.to_le_bytes())
        .map(|header| u64_at(header + 0x20))
        .sum()
}

/// Scripts call `token` in loops: the executable they start must not carry the whole program
/// (its relocations and pages are what makes it slow to start).
#[test]
fn the_executable_scripts_start_is_a_fraction_of_the_whole_program() {
    let front = loaded_bytes(env!("CARGO_BIN_EXE_tokdeck"));
    let core = loaded_bytes(env!("CARGO_BIN_EXE_tokdeck-core"));
    assert!(
        front * 3 < core,
        "tokdeck loads {front} bytes, tokdeck-core {core}: the small executable links too much"
    );
}

/// What bash offers at a Tab after `words`, through the script `tokdeck completions bash`
/// prints, as a shell that sourced it would run it.
fn bash_completes(env: &Env, words: &[&str]) -> Vec<String> {
    let script = format!(
        "source <(\"$TOKDECK_BIN\" completions bash) || exit 9\n\
         COMP_WORDS=({words})\nCOMP_CWORD={last}\nCOMP_TYPE=9\n\
         _clap_complete_tokdeck tokdeck \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        last = words.len() - 1,
    );
    let out = env
        .command_of(Path::new("bash"), &["-c", &script])
        .env("TOKDECK_BIN", bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "bash: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Profile names complete from the running agent, so a Tab never asks for a key; without
/// one, names are not offered (and nothing waits), while commands still complete.
#[test]
fn shell_completion_offers_profile_names_from_the_agent() {
    let env = Env::new();
    let server = MockServer::start();
    for name in ["loop", "lonely", "payroll"] {
        env.authorized_profile(name, &server, &[]);
    }
    assert_eq!(bash_completes(&env, &["tokdeck", "tok"]), ["token"]);
    assert!(
        bash_completes(&env, &["tokdeck", "token", "lo"]).is_empty(),
        "names without an agent"
    );

    let _agent = Agent::start(&env, &[]);
    let mut names = bash_completes(&env, &["tokdeck", "token", "lo"]);
    names.sort();
    assert_eq!(names, ["lonely", "loop"]);
    assert_eq!(
        bash_completes(&env, &["tokdeck", "refresh", "pay"]),
        ["payroll"]
    );
    assert_eq!(
        bash_completes(&env, &["tokdeck", "--no-agent", "inspect", "pa"]),
        ["payroll"],
        "the agent is asked for names even when the command would not ask it"
    );
}
