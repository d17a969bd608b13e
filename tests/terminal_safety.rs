//! Untrusted text never reaches a terminal raw: a hostile server, a hostile redirect and a
//! shared vault with escape sequences in it, against every command, the log and the app.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::{Read, Write};
use std::process::Output;
use std::time::Duration;

use common::{Env, Fault, HOSTILE, MockServer, stderr, stdout};

/// Fails when `bytes` hold a control sequence that came from the input: ESC, BEL, or the C1
/// controls CSI and OSC (U+009B, U+009D as UTF-8).
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!bytes.contains(&0x1b), "{what}: raw ESC in {text:?}");
    assert!(!bytes.contains(&0x07), "{what}: raw BEL in {text:?}");
    for c1 in ['\u{9b}', '\u{9d}'] {
        assert!(!text.contains(c1), "{what}: raw C1 control in {text:?}");
    }
}

fn assert_output_inert(what: &str, out: &Output) {
    assert_inert(&format!("{what} stdout"), &out.stdout);
    assert_inert(&format!("{what} stderr"), &out.stderr);
}

#[test]
fn a_hostile_error_is_shown_escaped_by_every_command_and_the_log() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    server.fail_next(Fault::HostileError, 1);
    let out = env.run(&["exchange", "p", &code]);
    assert!(!out.status.success());
    assert_output_inert("exchange", &out);
    assert!(
        stderr(&out).contains("\\x1b]52;c;aGFja2Vk"),
        "{}",
        stderr(&out)
    );

    server.fail_next(Fault::HostileError, 1);
    let out = env.run(&["refresh", "p"]);
    assert_output_inert("refresh", &out);
    assert!(stderr(&out).contains("PWNED"), "visible, not executed");

    // The error is recorded as received, and shown escaped by every later status.
    let text = env.vault_text();
    assert!(
        text.contains("\\u001B]52") || text.contains("\\e]52"),
        "kept as received"
    );
    let status = env.run(&["status"]);
    assert_output_inert("status", &status);
    assert!(stdout(&status).contains("\\x1b[2J"), "{}", stdout(&status));
    let json = env.run(&["status", "--json"]);
    assert_output_inert("status --json", &json);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let recorded = rows[0]["last_error"].as_str().unwrap_or_default();
    assert!(recorded.contains(HOSTILE), "JSON is lossless: {recorded:?}");

    server.fail_next(Fault::HostileHtml, 10);
    let out = env.run(&["refresh", "p"]);
    assert_output_inert("refresh (HTML body)", &out);
    assert_inert("log", env.log_text().as_bytes());
}

#[test]
fn a_hostile_token_and_owner_are_shown_escaped() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    server.fail_next(Fault::HostileToken, 1);
    let out = env.run(&["exchange", "p", &code]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_output_inert("exchange", &out);
    server.state.lock().unwrap().hostile_credentials = true;
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["token", "p"],
        &["check", "p"],
        &["refresh", "p"],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_output_inert(&format!("{args:?}"), &out);
    }
    let out = env.run(&["check", "p"]);
    assert!(
        stdout(&out).contains("ada@example.com\\x1b]52"),
        "{}",
        stdout(&out)
    );
    assert_inert("log", env.log_text().as_bytes());
}

#[test]
fn a_hostile_redirect_is_shown_escaped() {
    let env = Env::new();
    let server = MockServer::start();
    let port = env.add_loopback_profile("l", &server, &[]);
    let mut child = env
        .command(&[
            "authorize",
            "l",
            "--listen",
            "--no-browser",
            "--timeout",
            "20s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while stdout_pipe.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        url.push(byte[0] as char);
    }
    let state = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let hostile: String =
        url::form_urlencoded::byte_serialize(format!("x{HOSTILE}").as_bytes()).collect();
    let request = format!(
        "GET /callback?error=access_denied&error_description={hostile}&state={state} HTTP/1.1\r\n\r\n"
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_output_inert("authorize --listen", &out);
    assert!(
        stderr(&out).contains("authorization denied: access_denied (x\\x1b]52"),
        "{}",
        stderr(&out)
    );
    assert_inert("log", env.log_text().as_bytes());
}

/// A teammate's vault (shared through git) whose notes, client id and last error hold escape
/// sequences: it opens, warns naming the profile and field, and shows the values escaped.
fn hostile_vault(env: &Env, server: &MockServer) {
    env.authorized_profile("shared", server, &[]);
    let text = env.vault_text();
    let escaped = HOSTILE
        .replace('\u{1b}', "\\u001B")
        .replace('\u{7}', "\\u0007")
        .replace('\u{9b}', "\\u009B");
    let edited = text
        .replace(
            &format!("client_id = \"{}\"", common::CLIENT_ID),
            &format!("client_id = \"{}{escaped}\"\nnotes = \"note{escaped}\"\nlast_error = \"boom{escaped}\"", common::CLIENT_ID),
        );
    assert_ne!(edited, text);
    let plain = env.home().join("plain.toml");
    std::fs::write(&plain, edited).unwrap();
    let recipient = common::tool("age-keygen")
        .arg("-y")
        .arg(env.identity())
        .output()
        .unwrap();
    let recipient = String::from_utf8_lossy(&recipient.stdout)
        .trim()
        .to_string();
    let enc = common::tool("age")
        .args(["-r", &recipient, "-o"])
        .arg(env.vault())
        .arg(&plain)
        .output()
        .unwrap();
    assert!(enc.status.success(), "{}", stderr(&enc));
    std::fs::remove_file(plain).unwrap();
}

#[test]
fn a_shared_vault_with_escapes_opens_warns_and_shows_them_escaped() {
    let env = Env::new();
    let server = MockServer::start();
    hostile_vault(&env, &server);
    let out = env.run(&["status"]);
    assert_output_inert("status", &out);
    let err = stderr(&out);
    assert!(
        err.contains("profile 'shared': client_id holds control characters"),
        "{err}"
    );
    assert!(
        err.contains("profile 'shared': notes holds control characters"),
        "{err}"
    );
    assert!(stdout(&out).contains("boom\\x1b]52"), "{}", stdout(&out));
    for args in [
        &["token", "shared"][..],
        &["status", "--json"],
        &["refresh", "shared"],
    ] {
        assert_output_inert(&format!("{args:?}"), &env.run(args));
    }
    // New input is checked where a standard defines the characters.
    let out = env.run(&["edit", "shared", "--notes", "bell\u{7}"]);
    assert!(!out.status.success());
    assert_output_inert("edit", &out);
    let out = env.run(&["edit", "shared", "--client-id", "c\u{1b}[2J"]);
    assert!(
        stderr(&out).contains("only visible ASCII"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["edit", "shared", "--scope", "read \u{1b}]52"]);
    assert!(
        stderr(&out).contains("a scope cannot have"),
        "{}",
        stderr(&out)
    );
}

/// The app's raw output (every byte tmux receives from it, via pipe-pane) holds none of the
/// vault's sequences, and the screen shows them as visible escapes.
#[test]
fn the_app_draws_hostile_text_escaped() {
    let env = Env::new();
    let server = MockServer::start();
    hostile_vault(&env, &server);
    let raw = env.home().join("raw.bin");
    // A second's pause, so the pipe below is attached before the app draws anything.
    let script = format!("sh -c 'sleep 1; exec {}'", common::bin().display());
    let tmux = common::tmux::Tmux::start(&env, 160, 45, &script);
    tmux.pipe_to(&raw);
    let screen = tmux.wait_for("the detail pane", |s| {
        s.contains("notes") && s.contains("PWNED")
    });
    tmux.keys(&["q"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(screen.contains("\\x1b]52;c;aGFja2Vk"), "{screen}");
    // Each field from the vault shows its escapes, not only the error line.
    for shown in ["boom\\x1b]52", "test-client\\x1b]52", "note\\x1b]52"] {
        assert!(screen.contains(shown), "{shown} missing:\n{screen}");
    }
    let bytes = std::fs::read(&raw).unwrap_or_default();
    assert!(!bytes.is_empty(), "pipe-pane captured nothing");
    let text = String::from_utf8_lossy(&bytes);
    for sequence in ["\u{1b}]52;c;aGFja2Vk", "\u{1b}[31mPWNED", "\u{9b}2J"] {
        assert!(!text.contains(sequence), "the app wrote {sequence:?} raw");
    }
}
