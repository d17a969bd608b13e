//! The app's state machine, without a terminal.

use super::*;
use crate::vault::{Endpoints, Provider, Token};
use crate::worker::{FailureKind, Outcome};
use crossterm::event::KeyModifiers;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn profile(name: &str, expires_in: Option<i64>) -> Profile {
    let mut p = Profile::new(
        name.into(),
        Provider::Factorial,
        Endpoints::at("https://api.factorialhr.com"),
        "cid".into(),
        SecretString::from("s"),
        "urn:ietf:wg:oauth:2.0:oob".into(),
    );
    p.token = expires_in.map(|e| Token {
        access_token: SecretString::from(format!("access-{name}")),
        refresh_token: Some(SecretString::from("r")),
        token_type: "Bearer".into(),
        scope: None,
        obtained_at: at(-100),
        expires_at: Some(at(e)),
        refresh_expires_at: Some(at(7 * 86_400)),
        id_token: None,
    });
    p
}

fn app(profiles: Vec<Profile>) -> App {
    App::new(
        profiles,
        at(0),
        Settings {
            warn: Duration::from_secs(86_400),
            refresh_margin: Duration::from_secs(300),
            vault_label: "vault.age".into(),
            utc_offset: FixedOffset::east_opt(0).unwrap(),
            read_only_reason: None,
        },
    )
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn sent(effects: &[Effect]) -> Vec<(&str, &'static str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(c) => Some((c.profile.as_str(), c.job.kind().verb())),
            _ => None,
        })
        .collect()
}

#[test]
fn sorted_by_urgency_and_cursor_follows_the_profile() {
    let mut app = app(vec![
        profile("fine", Some(7200)),
        profile("stale", Some(-60)),
        profile("new", None),
    ]);
    let names: Vec<_> = app
        .order
        .iter()
        .map(|&i| app.profiles[i].name.as_str())
        .collect();
    assert_eq!(names, ["new", "stale", "fine"]);
    app.update(key('j'));
    assert_eq!(app.selected().unwrap().name, "stale");
    app.update(key('s'));
    assert_eq!(app.sort, SortKey::Name);
    assert_eq!(
        app.selected().unwrap().name,
        "stale",
        "selection kept across re-sort"
    );
}

#[test]
fn refresh_sends_a_job_marks_busy_and_the_event_updates_the_row() {
    let mut app = app(vec![profile("p", Some(10))]);
    let effects = app.update(key('r'));
    assert_eq!(sent(&effects), [("p", "refresh")]);
    assert!(app.busy.contains_key("p"));
    // A second r while busy sends nothing.
    assert!(sent(&app.update(key('r'))).is_empty());
    let Effect::Send(cmd) = &effects[0] else {
        unreachable!()
    };
    let saved = profile("p", Some(7200));
    app.update(Msg::Worker(Event::Succeeded {
        id: cmd.id,
        profile: "p".into(),
        outcome: Outcome::NewToken,
        saved: Some(Box::new(saved)),
    }));
    assert!(app.busy.is_empty());
    assert_eq!(app.selected_assessment().unwrap().access_left, Some(7200));
    assert!(app.log.back().unwrap().text.contains("new token saved"));
}

#[test]
fn failures_flash_and_log_as_errors() {
    let mut app = app(vec![profile("p", Some(10))]);
    let effects = app.update(key('r'));
    let Effect::Send(cmd) = &effects[0] else {
        unreachable!()
    };
    app.update(Msg::Worker(Event::Failed {
        id: cmd.id,
        profile: "p".into(),
        error: "refresh token expired or already used: authorize again".into(),
        kind: FailureKind::Refused,
        saved: None,
    }));
    let flash = app.flash.clone().unwrap();
    assert!(flash.error && flash.text.contains("authorize again"));
    assert!(app.log.back().unwrap().error);
}

#[test]
fn authorize_opens_a_popup_that_fills_copies_and_leads_to_paste() {
    let mut app = app(vec![profile("p", None)]);
    let effects = app.update(key('a'));
    assert_eq!(sent(&effects), [("p", "authorize")]);
    let Effect::Send(cmd) = &effects[0] else {
        unreachable!()
    };
    let effects = app.update(Msg::Worker(Event::AuthorizeUrl {
        id: cmd.id,
        profile: "p".into(),
        url: "https://x/oauth/authorize?state=1".into(),
        listening_on: None,
    }));
    assert!(matches!(&effects[0], Effect::Copy { .. }));
    assert!(matches!(&effects[1], Effect::OpenBrowser(_)));
    let Mode::Authorize(popup) = &app.mode else {
        panic!("no popup")
    };
    assert!(popup.url.is_some());
    app.update(key('e'));
    assert!(matches!(app.mode, Mode::Paste(_)));
    app.update(Msg::Paste("http://cb?code=abc".into()));
    let effects = app.update(code(KeyCode::Enter));
    assert_eq!(sent(&effects), [("p", "exchange")]);
    assert!(matches!(app.mode, Mode::Normal));
}

#[test]
fn delete_and_revoke_need_confirmation() {
    let mut app = app(vec![profile("p", Some(100))]);
    app.update(key('d'));
    assert!(app.update(key('n')).is_empty());
    app.update(key('d'));
    let effects = app.update(key('y'));
    assert!(matches!(&effects[0], Effect::Save(SaveOp::Delete(n)) if n == "p"));
    app.update(key('x'));
    assert_eq!(sent(&app.update(key('y'))), [("p", "revoke")]);
}

#[test]
fn filter_narrows_rows_and_escape_clears() {
    let mut app = app(vec![
        profile("alpha", Some(100)),
        profile("beta", Some(100)),
    ]);
    app.update(key('/'));
    app.update(key('b'));
    assert_eq!(app.order.len(), 1);
    app.update(code(KeyCode::Enter));
    assert_eq!(app.order.len(), 1, "Enter keeps the filter");
    app.update(key('/'));
    app.update(code(KeyCode::Esc));
    assert_eq!(app.order.len(), 2);
}

#[test]
fn a_group_word_keeps_the_profiles_of_that_group() {
    let mut grouped = profile("payroll", Some(100));
    grouped.group = Some("hr".into());
    let mut app = app(vec![grouped, profile("other", Some(100))]);
    app.update(key('/'));
    for c in "group:hr".chars() {
        app.update(key(c));
    }
    app.update(code(KeyCode::Enter));
    let names = |app: &App| -> Vec<String> {
        app.order
            .iter()
            .map(|&i| app.profiles[i].name.clone())
            .collect()
    };
    assert_eq!(names(&app), ["payroll"]);
    app.update(key('/'));
    for _ in 0.."group:hr".len() {
        app.update(code(KeyCode::Backspace));
    }
    for c in "group:none".chars() {
        app.update(key(c));
    }
    assert_eq!(names(&app), ["other"]);
}

#[test]
fn countdowns_tick_and_reveal_expires() {
    let mut app = app(vec![profile("p", Some(100))]);
    app.update(key('v'));
    assert!(app.revealed("p"));
    app.update(Msg::Tick(at(11)));
    assert!(!app.revealed("p"));
    assert_eq!(app.selected_assessment().unwrap().access_left, Some(89));
}

#[test]
fn auto_refresh_fires_once_inside_the_margin() {
    let mut p = profile("auto", Some(600));
    p.auto_refresh = true;
    let mut app = app(vec![p, profile("manual", Some(10))]);
    assert!(
        sent(&app.update(Msg::Tick(at(1)))).is_empty(),
        "600 s left > 5 min margin"
    );
    assert_eq!(sent(&app.update(Msg::Tick(at(301)))), [("auto", "refresh")]);
    assert!(
        sent(&app.update(Msg::Tick(at(302)))).is_empty(),
        "busy: not twice"
    );
}

#[test]
fn a_token_shorter_than_the_margin_is_refreshed_once_then_backs_off() {
    let mut p = profile("short", Some(60));
    if let Some(t) = p.token.as_mut() {
        t.obtained_at = at(0);
    }
    p.auto_refresh = true;
    let mut app = app(vec![p]);
    let mut sends = Vec::new();
    for s in 1..=40 {
        for e in app.update(Msg::Tick(at(s))) {
            if let Effect::Send(cmd) = e {
                sends.push((s, cmd.id));
            }
        }
    }
    assert_eq!(sends.len(), 1, "one refresh in 40 s: {sends:?}");
    assert_eq!(sends[0].0, 30, "half-way through a 60 s token");
    app.update(Msg::Worker(Event::Failed {
        id: sends[0].1,
        profile: "short".into(),
        error: "server error HTTP 503 from h: try again later".into(),
        kind: FailureKind::Transient,
        saved: None,
    }));
    let retries: Vec<i64> = (41..=100)
        .filter(|&s| !sent(&app.update(Msg::Tick(at(s)))).is_empty())
        .collect();
    assert_eq!(retries, [70], "one retry after a 30 s backoff");
}

#[test]
fn refresh_due_picks_only_profiles_inside_the_margin() {
    let mut app = app(vec![
        profile("soon", Some(60)),
        profile("later", Some(7200)),
        profile("none", None),
    ]);
    assert_eq!(sent(&app.update(key('R'))), [("soon", "refresh")]);
}

#[test]
fn quit_asks_the_runtime_to_drain_and_a_second_quit_is_immediate() {
    let mut app = app(vec![profile("p", Some(10))]);
    app.update(key('r'));
    assert!(matches!(app.update(key('q')).as_slice(), [Effect::Quit]));
    assert!(app.quitting);
    assert!(app.flash.as_ref().unwrap().text.contains("finishing 1 job"));
    assert!(matches!(app.update(key('q')).as_slice(), [Effect::QuitNow]));
}

#[test]
fn escape_on_a_listening_popup_stops_the_listener_and_frees_the_profile() {
    let mut p = profile("p", None);
    p.redirect_uri = "http://127.0.0.1:8765/cb".into();
    let mut app = app(vec![p]);
    let effects = app.update(key('a'));
    let Effect::Send(cmd) = &effects[0] else {
        unreachable!()
    };
    let id = cmd.id;
    app.update(Msg::Worker(Event::AuthorizeUrl {
        id,
        profile: "p".into(),
        url: "http://x/authorize".into(),
        listening_on: Some("127.0.0.1:8765".parse().unwrap()),
    }));
    let effects = app.update(code(KeyCode::Esc));
    assert!(matches!(effects.as_slice(), [Effect::Cancel(j)] if *j == id));
    assert!(app.busy.is_empty(), "free at once");
    assert!(matches!(app.mode, Mode::Normal));
    assert!(
        app.flash
            .as_ref()
            .unwrap()
            .text
            .contains("stopped listening")
    );
    // The worker's cancelled event that follows is no error.
    app.update(Msg::Worker(Event::Failed {
        id,
        profile: "p".into(),
        error: "cancelled".into(),
        kind: FailureKind::Cancelled,
        saved: None,
    }));
    assert!(!app.log.back().unwrap().error);
}

#[test]
fn copy_token_flashes_and_missing_token_explains() {
    // "q" has no token and sorts first.
    let mut app = app(vec![profile("p", Some(100)), profile("q", None)]);
    assert!(app.update(key('y')).is_empty());
    assert!(app.flash.as_ref().unwrap().text.contains("press a"));
    app.update(key('j'));
    let effects = app.update(key('y'));
    assert!(matches!(&effects[0], Effect::Copy { .. }));
    assert!(app.flash.as_ref().unwrap().text.contains("OSC 52"));
}

#[test]
fn read_only_vault_refuses_changes_but_still_copies() {
    let mut app = App::new(
        vec![profile("p", Some(100))],
        at(0),
        Settings {
            read_only_reason: Some("read-only: /v is not writable".into()),
            ..app(vec![]).settings
        },
    );
    assert!(app.flash.as_ref().unwrap().text.contains("read-only"));
    for k in ['r', 'a', 'e', 'n', 'E', 'd', 'x', 'R', 'c'] {
        assert!(
            app.update(key(k)).is_empty(),
            "{k} acted on a read-only vault"
        );
        assert!(matches!(app.mode, Mode::Normal), "{k} opened a dialog");
    }
    assert!(matches!(&app.update(key('y'))[0], Effect::Copy { .. }));
}

#[test]
fn new_profile_form_submits_a_save() {
    let mut app = app(vec![]);
    app.update(key('n'));
    for c in "acme".chars() {
        app.update(key(c));
    }
    // Name, Provider, Base URL, Issuer, then the client id.
    for _ in 0..4 {
        app.update(code(KeyCode::Tab));
    }
    app.update(key('c'));
    app.update(code(KeyCode::Tab));
    app.update(Msg::Paste("secret\n".into()));
    let effects = app.update(code(KeyCode::Enter));
    assert!(
        matches!(&effects[0], Effect::Save(SaveOp::Upsert { original: None, profile }) if profile.name == "acme")
    );
}

/// The profile saved from the form is the one selected once the save lands, wherever it
/// sorts; a failed save selects nothing new.
#[test]
fn the_profile_saved_from_the_form_is_selected() {
    let mut app = app(vec![
        profile("beta", Some(60)),
        profile("gamma", Some(7_200)),
    ]);
    assert_eq!(app.selected().map(|p| p.name.as_str()), Some("beta"));
    app.update(key('n'));
    for c in "zeta".chars() {
        app.update(key(c));
    }
    // Refused for the empty client id, the focus is on it: type it, then the secret.
    app.update(code(KeyCode::Enter));
    app.update(key('c'));
    app.update(code(KeyCode::Tab));
    app.update(Msg::Paste("secret".into()));
    let effects = app.update(code(KeyCode::Enter));
    let Some(Effect::Save(SaveOp::Upsert { profile: saved, .. })) = effects.into_iter().next()
    else {
        panic!("no save: {:?}", app.mode);
    };
    let mut after = app.profiles.clone();
    after.push(*saved);
    app.update(Msg::Saved(Ok(after.clone())));
    assert_eq!(app.selected().map(|p| p.name.as_str()), Some("zeta"));
    app.update(code(KeyCode::End));
    let moved = app.selected().map(|p| p.name.clone());
    assert_ne!(moved.as_deref(), Some("zeta"));
    app.update(Msg::Saved(Ok(after)));
    assert_eq!(app.selected().map(|p| p.name.clone()), moved, "only once");
}
