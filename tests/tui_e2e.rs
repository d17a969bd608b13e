//! End to end: the real binary in a real terminal (tmux) against the mock OAuth server.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::tmux::Tmux;
use common::{Env, MockServer};

/// The text of the table row for `name`.
fn row<'a>(screen: &'a str, name: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(&format!("│{name} ")))
        .unwrap_or_else(|| panic!("no row for {name}:\n{screen}"))
}

#[test]
fn open_refresh_and_quit_in_a_real_terminal() {
    let env = Env::new();
    let server = MockServer::start();
    server.set_expires_in(120);
    env.authorized_profile("billing", &server, &[]);
    env.authorized_profile("crm-sync", &server, &[]);
    let script = format!(
        "sh -c '{} ; echo \"tokdeck exited $?\"; exec sh -i'",
        common::bin().display()
    );
    let tmux = Tmux::start(&env, 100, 30, &script);

    // Both profiles are listed with live countdowns under two minutes.
    let screen = tmux.wait_for("the profile table", |s| {
        s.contains("billing") && s.contains("crm-sync")
    });
    assert!(row(&screen, "billing").contains("1m 5"), "{screen}");
    assert!(screen.contains("2 ok"), "{screen}");
    let first = row(&screen, "billing").to_string();
    let ticked = tmux.wait_for("the countdown to tick", |s| row(s, "billing") != first);
    assert!(row(&ticked, "billing").contains("1m "), "{ticked}");

    // Refresh the selected profile (sorted by expiry: billing first) with a 2 h lifetime.
    server.set_expires_in(7200);
    let selected = ticked
        .lines()
        .skip_while(|l| !l.contains("NAME"))
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .map(|s| s.trim_start_matches('│').to_string())
        .unwrap();
    let refreshes = server.refresh_requests();
    tmux.keys(&["r"]);
    let after = tmux.wait_for("the countdown to reset", |s| {
        row(s, &selected).contains("1h 59m")
    });
    assert_eq!(server.refresh_requests(), refreshes + 1);
    assert!(after.contains("new token saved"), "{after}");
    // The new token is on disk.
    assert!(
        env.vault_text()
            .contains(&server.last_access_token().unwrap())
    );

    // Another process adds a profile: the running app notices and lists it.
    env.add_profile("added-elsewhere", &server, &[]);
    let reloaded = tmux.wait_for("the reload", |s| s.contains("added-elsewhere"));
    assert!(reloaded.contains("profiles 3/3"), "{reloaded}");

    // y sends the access token as a plain OSC 52, which tmux takes into its paste buffer
    // (the test server runs with set-clipboard on; a passthrough-wrapped one would be dropped).
    tmux.keys(&["y"]);
    tmux.wait_for("the copy message", |s| s.contains("terminal's clipboard"));
    let copied = tmux.buffer();
    let selected_token = env.vault_text();
    assert!(
        !copied.is_empty() && selected_token.contains(&copied),
        "tmux buffer holds '{copied}', not a stored access token"
    );

    // Help, then grow the window and quit back to the shell.
    tmux.keys(&["?"]);
    tmux.wait_for("the help popup", |s| s.contains("keys"));
    tmux.keys(&["x"]);
    tmux.wait_for("the help to close", |s| !s.contains("other keys close"));
    tmux.resize(150, 45);
    tmux.wait_for("the wide layout", |s| {
        s.lines().count() >= 40 && s.contains("client id")
    });
    tmux.keys(&["q"]);
    let prompt = |s: &str| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| matches!(l.trim_end().chars().last(), Some('$' | '#')))
    };
    let shell = tmux.wait_for("the shell prompt", |s| {
        s.contains("tokdeck exited 0") && prompt(s)
    });
    assert!(
        !shell.contains("profiles 3/3") && !shell.contains("NAME"),
        "a frame was left on screen: {shell}"
    );
}

#[test]
fn ctrl_z_suspends_to_the_shell_and_fg_resumes() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("parked", &server, &[]);
    // Job control needs an interactive shell.
    let tmux = Tmux::start(&env, 100, 30, "bash --norc --noprofile -i");
    tmux.wait_for("the shell", |s| s.contains('#') || s.contains('$'));
    tmux.keys(&[&common::bin().display().to_string(), "Enter"]);
    tmux.wait_for("the app", |s| s.contains("parked"));
    tmux.keys(&["C-z"]);
    let stopped = tmux.wait_for("the suspended job", |s| s.contains("Stopped"));
    assert!(
        !stopped.contains("profiles 1/1"),
        "the app's screen is gone: {stopped}"
    );
    tmux.keys(&["fg", "Enter"]);
    let resumed = tmux.wait_for("the app to repaint", |s| s.contains("profiles 1/1"));
    assert!(resumed.contains("parked"), "{resumed}");
    // Still responsive after resuming.
    tmux.keys(&["?"]);
    tmux.wait_for("the help popup", |s| {
        s.contains("keys (scroll j/k g/G; other keys close)")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the help to close", |s| {
        !s.contains("keys (scroll j/k g/G; other keys close)")
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the shell again", |s| {
        !s.contains("profiles 1/1") && s.contains("fg")
    });
}

/// A vault of 1,000 profiles in `env`, written through the library: every 100th one's refresh
/// window ends in 12 hours (so it is `expiring` under the default 1-day warning), the rest are
/// fine for days.
fn thousand_profiles(env: &Env) {
    let hours = |h: i64| chrono::Utc::now() + chrono::Duration::hours(h);
    let profiles = (0..1_000)
        .map(|i| {
            let window_end = if i % 100 == 7 {
                hours(12)
            } else {
                hours(24 * 6)
            };
            let token = common::library_token(format!("refresh-{i}"), hours(2), window_end);
            common::library_profile(&format!("app-{i:04}"), "http://127.0.0.1:9", Some(token))
        })
        .collect();
    common::library_vault(&env.vault(), &env.identity(), profiles);
}

#[test]
fn filtering_a_thousand_profiles_down_to_the_expiring_ones() {
    let env = Env::empty();
    thousand_profiles(&env);
    let tmux = Tmux::start(&env, 120, 45, &common::bin().display().to_string());
    let screen = tmux.wait_for("the table of 1,000 profiles", |s| {
        s.contains("profiles 1000/1000")
    });
    assert!(
        screen.contains("990 ok") && screen.contains("10 expiring"),
        "{screen}"
    );

    tmux.keys(&["/"]);
    tmux.keys(&["state:expiring"]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the ten expiring ones", |s| s.contains("profiles 10/1000"));
    let rows: Vec<&str> = screen.lines().filter(|l| l.contains("│app-")).collect();
    assert_eq!(rows.len(), 10, "{screen}");
    assert!(rows.iter().all(|r| r.contains("expiring")), "{screen}");
    assert!(
        screen.contains("app-0007") && screen.contains("app-0907"),
        "{screen}"
    );

    // The count key for the state shown puts every profile back, and again narrows.
    tmux.keys(&["2"]);
    tmux.wait_for("every profile again", |s| s.contains("profiles 1000/1000"));
    tmux.keys(&["2"]);
    tmux.wait_for("the expiring ones again", |s| {
        s.contains("profiles 10/1000")
    });
    tmux.keys(&["q"]);
}
