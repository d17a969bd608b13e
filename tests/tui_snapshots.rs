//! Rendering snapshots: the real view into a ratatui TestBackend, with a fixed clock.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, FixedOffset, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokdeck::tui::app::{App, Msg, Settings};
use tokdeck::tui::theme::Theme;
use tokdeck::tui::view;
use tokdeck::vault::{CheckResult, Endpoints, OwnerType, Profile, Provider, Token};
use tokdeck::worker::Event;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn profile(name: &str, provider: Provider) -> Profile {
    let base = provider
        .base_url()
        .unwrap_or("http://127.0.0.1:8080")
        .to_string();
    let mut p = Profile::new(
        name.into(),
        provider,
        Endpoints::at(base),
        format!("{name}-client"),
        SecretString::from("client-secret-value"),
        "urn:ietf:wg:oauth:2.0:oob".into(),
    );
    p.scopes = vec!["read".into(), "write".into()];
    p
}

/// A user token obtained `age` seconds ago, living `life` seconds, with a 7 d window.
fn user_token(age: i64, life: i64) -> Token {
    Token {
        access_token: SecretString::from("access-token-value"),
        refresh_token: Some(SecretString::from("refresh-token-value")),
        token_type: "Bearer".into(),
        scope: Some("read write".into()),
        obtained_at: at(-age),
        expires_at: Some(at(life - age)),
        refresh_expires_at: Some(at(7 * DAY - age)),
        id_token: None,
    }
}

/// One profile in each state the table distinguishes.
fn fleet() -> Vec<Profile> {
    let mut ok = profile("payroll-sync", Provider::Factorial);
    ok.group = Some("payroll".into());
    ok.token = Some(user_token(10 * 60, 2 * HOUR));
    ok.last_check = Some(CheckResult {
        checked_at: at(-300),
        email: Some("ada@example.com".into()),
        company_id: Some(42),
        employee_id: Some(7),
        ..CheckResult::default()
    });
    let mut hour = profile("time-tracking", Provider::FactorialDemo);
    hour.token = Some(user_token(HOUR + 20 * 60, 2 * HOUR));
    let mut window = profile("expenses", Provider::Factorial);
    window.token = Some(user_token(6 * DAY + 20 * HOUR, 7 * DAY + HOUR));
    let mut stale = profile("reporting", Provider::Factorial);
    stale.token = Some(user_token(3 * HOUR, 2 * HOUR));
    let mut dead = profile("old-import", Provider::Factorial);
    dead.token = Some(user_token(8 * DAY, 2 * HOUR));
    let mut company = profile("company-hub", Provider::Factorial);
    company.owner = OwnerType::Company;
    company.token = Some(Token {
        expires_at: None,
        refresh_token: None,
        refresh_expires_at: None,
        id_token: None,
        ..user_token(30 * DAY, 0)
    });
    let mut failing = profile("ats-bridge", Provider::Custom);
    failing.token = Some(user_token(HOUR, 2 * HOUR));
    failing.last_error = Some("refresh token expired or already used: authorize again".into());
    let fresh = profile("new-app", Provider::FactorialDemo);
    vec![ok, hour, window, stale, dead, company, failing, fresh]
}

fn app(profiles: Vec<Profile>) -> App {
    App::new(
        profiles,
        at(0),
        Settings {
            warn: Duration::from_secs(DAY as u64),
            refresh_margin: Duration::from_secs(300),
            vault_label: "~/.local/share/tokdeck/vault.age".into(),
            utc_offset: FixedOffset::east_opt(0).unwrap(),
            read_only_reason: None,
        },
    )
}

fn render(app: &App, theme: &Theme, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::draw(f, app, theme)).unwrap();
    terminal
}

fn default_theme() -> Theme {
    Theme::built_in("default").unwrap()
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(c_code(c), KeyModifiers::NONE))
}

fn c_code(c: char) -> KeyCode {
    KeyCode::Char(c)
}

/// Reads the QR code drawn in `buffer` (white on black half-blocks) with a QR decoder.
fn decode_qr(buffer: &ratatui::buffer::Buffer) -> String {
    use ratatui::style::Color;
    let area = buffer.area;
    let rows: Vec<Vec<(bool, bool)>> = (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| &buffer[(x, y)])
                .filter(|cell| cell.bg == Color::Black && cell.fg == Color::White)
                .map(|cell| {
                    tokdeck_testkit::qr::cell_of(cell.symbol().chars().next().unwrap_or(' '))
                })
                .collect::<Vec<_>>()
        })
        .filter(|row| !row.is_empty())
        .collect();
    assert!(!rows.is_empty(), "no QR code drawn");
    tokdeck_testkit::qr::decode(&rows).expect("the decoder found no code")
}

fn text_of(terminal: &Terminal<TestBackend>) -> String {
    terminal.backend().to_string()
}

#[test]
fn empty_vault() {
    let app = app(vec![]);
    let t = render(&app, &default_theme(), 80, 24);
    assert!(text_of(&t).contains("No profiles yet. Press n"));
    insta::assert_snapshot!("empty_80x24", t.backend());
}

#[test]
fn every_urgency_state_at_80x24_and_160x40() {
    let app = app(fleet());
    let small = render(&app, &default_theme(), 80, 24);
    let text = text_of(&small);
    // Most urgent first: the broken ones fit on the small screen.
    for expected in [
        "error",
        "expired 7d ago",
        "over 1d ago",
        "no-token",
        "expired 1h ago",
        "stale",
    ] {
        assert!(text.contains(expected), "80x24 lacks {expected}");
    }
    insta::assert_snapshot!("fleet_80x24", small.backend());
    let large = render(&app, &default_theme(), 160, 40);
    let text = text_of(&large);
    for expected in ["never", "1h 50m", "40m 0s", "SCOPES"] {
        assert!(text.contains(expected), "160x40 lacks {expected}");
    }
    insta::assert_snapshot!("fleet_160x40", large.backend());
}

#[test]
fn detail_pane_masks_until_revealed() {
    let mut app = app(fleet());
    // Select the healthy profile with its owner check.
    while app.selected().map(|p| p.name.as_str()) != Some("payroll-sync") {
        app.update(key('j'));
    }
    let masked = render(&app, &default_theme(), 160, 40);
    let text = text_of(&masked);
    assert!(!text.contains("access-token-value") && !text.contains("client-secret-value"));
    assert!(text.contains("ada@example.com, company 42, employee 7"));
    assert!(text.contains("group         payroll"), "{text}");
    insta::assert_snapshot!("detail_masked_160x40", masked.backend());
    app.update(key('v'));
    let shown = text_of(&render(&app, &default_theme(), 160, 40));
    assert!(shown.contains("access-token-value") && shown.contains("client-secret-value"));
}

#[test]
fn megabytes_of_notes_are_cut_to_what_the_pane_can_show() {
    let mut big = profile("big-notes", Provider::Factorial);
    big.notes = "n".repeat(10 * 1024 * 1024);
    let app = app(vec![big]);
    let terminal = render(&app, &default_theme(), 160, 40);
    let text = text_of(&terminal);
    assert!(text.contains("notes"), "{text}");
    // The pane holds what fits; the rest of ten megabytes is never wrapped or drawn.
    let cell = view::detail_text(&app, &default_theme()).unwrap();
    assert!(cell.len() < 8 * 1024, "{} bytes drawn", cell.len());
    assert!(
        cell.contains("cut: 10240 KiB in all"),
        "{}",
        &cell[cell.len() - 100..]
    );
}

#[test]
fn help_popup_lists_the_keymap() {
    let mut app = app(fleet());
    app.update(key('?'));
    let t = render(&app, &default_theme(), 80, 24);
    assert!(text_of(&t).contains("refresh all that end within the margin"));
    insta::assert_snapshot!("help_80x24", t.backend());
}

#[test]
fn authorize_popup_shows_the_url() {
    let mut app = app(vec![profile("new-app", Provider::Factorial)]);
    let effects = app.update(key('a'));
    let id = match &effects[0] {
        tokdeck::tui::app::Effect::Send(c) => c.id,
        other => panic!("{other:?}"),
    };
    app.update(Msg::Worker(Event::AuthorizeUrl {
        id,
        profile: "new-app".into(),
        url: "https://api.factorialhr.com/oauth/authorize?client_id=new-app-client&redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob&response_type=code&scope=read%20write&state=fixed".into(),
        listening_on: None,
    }));
    let t = render(&app, &default_theme(), 80, 24);
    assert!(text_of(&t).contains("press e"));
    insta::assert_snapshot!("authorize_80x24", t.backend());
}

#[test]
fn device_popup_shows_the_code_the_address_and_a_countdown() {
    let mut tv = profile("tv", Provider::Custom);
    tv.grant = tokdeck::vault::GrantType::Device;
    let mut app = app(vec![tv]);
    let effects = app.update(key('a'));
    let id = match &effects[0] {
        tokdeck::tui::app::Effect::Send(c) => c.id,
        other => panic!("{other:?}"),
    };
    let effects = app.update(Msg::Worker(Event::DeviceCode {
        id,
        profile: "tv".into(),
        user_code: "WDJB-MJHT".into(),
        verification_uri: "https://auth.example.com/device".into(),
        uri_to_open: "https://auth.example.com/device?user_code=WDJB-MJHT".into(),
        expires_at: at(15 * 60),
    }));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, tokdeck::tui::app::Effect::Copy { .. })),
        "the address goes to the clipboard"
    );
    let t = render(&app, &default_theme(), 80, 24);
    let text = text_of(&t);
    assert!(
        text.contains("WDJB-MJHT") && text.contains("ends in 15m"),
        "{text}"
    );
    assert!(text.contains("c copy code"), "{text}");
    // Too small for the address's QR code: a note says what size it needs.
    assert!(
        text.contains("(a QR code of the address needs a terminal of"),
        "{text}"
    );
    insta::assert_snapshot!("device_80x24", t.backend());
    // Large enough: the code is drawn, and a QR decoder reads the address back from it.
    let big = render(&app, &default_theme(), 100, 50);
    insta::assert_snapshot!("device_qr_100x50", big.backend());
    assert_eq!(
        decode_qr(big.backend().buffer()),
        "https://auth.example.com/device?user_code=WDJB-MJHT"
    );
    // c copies the code; Esc stops the polling job.
    let copied = app.update(key('c'));
    assert!(
        matches!(&copied[..], [tokdeck::tui::app::Effect::Copy { what, .. }] if what == "the login code")
    );
    let stopped = app.update(Msg::Key(KeyEvent::from(KeyCode::Esc)));
    assert!(matches!(&stopped[..], [tokdeck::tui::app::Effect::Cancel(j)] if *j == id));
}

#[test]
fn error_state_with_log_and_flash() {
    let mut app = app(fleet());
    let effects = app.update(key('r'));
    let id = match &effects[0] {
        tokdeck::tui::app::Effect::Send(c) => c.id,
        other => panic!("{other:?}"),
    };
    app.update(key('l'));
    app.update(Msg::Worker(Event::Failed {
        id,
        profile: "ats-bridge".into(),
        error: "server error HTTP 503 from 127.0.0.1:8080: try again later".into(),
        kind: tokdeck::worker::FailureKind::Transient,
        saved: None,
    }));
    let t = render(&app, &default_theme(), 80, 24);
    assert!(text_of(&t).contains("server error HTTP 503"));
    insta::assert_snapshot!("error_log_80x24", t.backend());
}

#[test]
fn busy_rows_show_a_spinner() {
    let mut app = app(fleet());
    app.update(key('r'));
    let text = text_of(&render(&app, &default_theme(), 80, 24));
    assert!(text.contains("refresh… ⠋"), "{text}");
}

#[test]
fn each_theme_colours_by_role() {
    let app = app(fleet());
    for name in Theme::built_in_names() {
        let theme = Theme::built_in(name).unwrap();
        let t = render(&app, &theme, 80, 24);
        insta::assert_debug_snapshot!(format!("theme_{name}"), t.backend().buffer());
    }
    let mono = render(&app, &Theme::monochrome(), 80, 24);
    let buffer = mono.backend().buffer();
    assert!(
        buffer
            .content
            .iter()
            .all(|c| c.fg == ratatui::style::Color::Reset)
    );
}

#[test]
fn new_profile_form() {
    let mut app = app(vec![]);
    app.update(key('n'));
    for c in "acme".chars() {
        app.update(key(c));
    }
    let t = render(&app, &default_theme(), 80, 24);
    insta::assert_snapshot!("form_80x24", t.backend());
}

/// The form's second page has what `add` sets beyond the app; a refused value brings its
/// field into focus, on its page, with the reason under the fields.
#[test]
fn the_forms_second_page_and_a_refusal_at_80x24_and_120x40() {
    for (width, height) in [(80, 24), (120, 40)] {
        let mut app = app(vec![]);
        app.update(key('n'));
        for c in "acme".chars() {
            app.update(key(c));
        }
        app.update(Msg::Key(KeyEvent::new(
            KeyCode::PageDown,
            KeyModifiers::NONE,
        )));
        let page = text_of(&render(&app, &default_theme(), width, height));
        for label in [
            "Authorize URL",
            "Token URL",
            "Refresh window",
            "Env var",
            "Notes",
        ] {
            assert!(page.contains(label), "{label}: {page}");
        }
        // Back to the first page, fill it, then a plain-http token URL on the second.
        app.update(Msg::Key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE)));
        for _ in 0..4 {
            app.update(Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)));
        }
        app.update(key('c'));
        app.update(Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)));
        app.update(Msg::Paste("secret".into()));
        app.update(Msg::Key(KeyEvent::new(
            KeyCode::PageDown,
            KeyModifiers::NONE,
        )));
        app.update(Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)));
        app.update(Msg::Paste("http://auth.example.com/token".into()));
        app.update(Msg::Key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE)));
        app.update(Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)));
        let t = render(&app, &default_theme(), width, height);
        let text = text_of(&t);
        assert!(text.contains("more (2/2"), "{text}");
        assert!(text.contains("▶ Token URL"), "{text}");
        assert!(text.contains("refusing http://"), "{text}");
        insta::assert_snapshot!(format!("form_refused_{width}x{height}"), t.backend());
    }
}

/// Columns sized from their content at every terminal size: nothing cut that fits, spare width
/// not handed to NAME, the list visible even at 40x10.
#[test]
fn the_table_fits_every_terminal_size() {
    let mut profiles = fleet();
    // A custom host with a port, and a row whose access token expired seconds ago.
    if let Some(p) = profiles.iter_mut().find(|p| p.name == "ats-bridge") {
        p.endpoints = Endpoints::at("http://127.0.0.1:18080");
    }
    let mut just = profile("just-expired", Provider::Factorial);
    just.token = Some(user_token(2 * HOUR + 21, 2 * HOUR));
    profiles.push(just);
    let app = app(profiles);
    for (w, h) in [(40, 10), (80, 24), (120, 30), (200, 50)] {
        let t = render(&app, &default_theme(), w, h);
        let text = text_of(&t);
        assert!(text.contains("ats-bridge"), "{w}x{h}: no rows\n{text}");
        assert!(
            text.contains("expired 21s ago"),
            "{w}x{h}: countdown cut\n{text}"
        );
        if w >= 80 {
            assert!(
                text.contains("127.0.0.1:18080"),
                "{w}x{h}: host cut\n{text}"
            );
        }
        let name_header = text
            .lines()
            .find(|l| l.contains("NAME"))
            .expect("a header row");
        let gap = name_header
            .split("NAME")
            .nth(1)
            .map(|rest| rest.len() - rest.trim_start().len())
            .unwrap_or(0);
        assert!(
            gap < 20,
            "{w}x{h}: NAME takes the spare width\n{name_header}"
        );
        insta::assert_snapshot!(format!("sizes_{w}x{h}"), t.backend());
    }
}

#[test]
fn below_the_minimum_size_the_screen_says_so() {
    let app = app(fleet());
    let text = text_of(&render(&app, &default_theme(), 30, 6));
    assert!(text.contains("terminal too small"), "{text}");
}

#[test]
fn the_filter_stays_visible_on_a_narrow_screen() {
    let mut app = app(fleet());
    app.update(key('/'));
    for c in "port".chars() {
        app.update(key(c));
    }
    let text = text_of(&render(&app, &default_theme(), 80, 24));
    let header = text.lines().next().unwrap_or_default();
    assert!(header.contains("filter: port"), "{header}");
    // The footer shows the filter's keys, not the main ones (which would type letters).
    let footer = text.lines().last().unwrap_or_default();
    assert!(
        footer.contains("Enter keep") && footer.contains("Esc clear"),
        "{footer}"
    );
    assert!(!footer.contains("refresh"), "{footer}");
}

#[test]
fn the_help_popup_goes_to_its_end_and_says_how_to_scroll() {
    let mut app = app(fleet());
    app.update(key('?'));
    let top = text_of(&render(&app, &default_theme(), 80, 20));
    assert!(top.contains("scroll j/k g/G"), "{top}");
    app.update(key('G'));
    let end = text_of(&render(&app, &default_theme(), 80, 20));
    assert!(end.contains("keys (scroll"), "G closed the help: {end}");
    assert!(!end.contains("lines 1-"), "G did not go to the end: {end}");
    app.update(key('g'));
    let again = text_of(&render(&app, &default_theme(), 80, 20));
    assert!(again.contains("lines 1-"), "{again}");
}

#[test]
fn the_header_counts_each_state_under_its_own_name() {
    let mut profiles: Vec<Profile> = (0..7)
        .map(|i| {
            let mut p = profile(&format!("broken-{i}"), Provider::Factorial);
            p.token = Some(user_token(60, 2 * HOUR));
            p.last_error = Some("invalid_client".into());
            p
        })
        .collect();
    profiles.extend(fleet());
    let app = app(profiles);
    let text = text_of(&render(&app, &default_theme(), 200, 50));
    let header = text.lines().next().unwrap_or_default();
    for expected in [
        "3 ok",
        "1 expiring",
        "1 stale",
        "1 expired",
        "8 error",
        "1 no token",
    ] {
        assert!(header.contains(expected), "{expected} missing: {header}");
    }
}

#[test]
fn the_help_popup_scrolls_when_it_does_not_fit() {
    let mut app = app(fleet());
    app.update(key('?'));
    let first = text_of(&render(&app, &default_theme(), 80, 24));
    assert!(first.contains("move up") && !first.contains("close without saving"));
    assert!(first.contains("lines 1-"), "{first}");
    for _ in 0..100 {
        app.update(key('j'));
    }
    let last = render(&app, &default_theme(), 80, 24);
    let text = text_of(&last);
    assert!(text.contains("close without saving"), "{text}");
    assert!(
        text.contains("j/↓ scroll"),
        "the hint line, from the keymap: {text}"
    );
    insta::assert_snapshot!("help_scrolled_80x24", last.backend());
    app.update(key('x'));
    assert!(!text_of(&render(&app, &default_theme(), 80, 24)).contains("keys ("));
}

#[test]
fn the_detail_pane_shows_the_profiles_last_audit_entries() {
    use tokdeck::audit::{Entry, Prints, Who, fingerprint};
    let mut app = app(fleet());
    while app.selected().map(|p| p.name.as_str()) != Some("payroll-sync") {
        app.update(key('j'));
    }
    let entry = |profile: &str, action: &str, minutes: i64| Entry {
        at: at(-minutes * 60),
        host: "laptop".into(),
        pid: 7,
        who: Who::Agent,
        profile: profile.into(),
        action: action.into(),
        result: "ok".into(),
        detail: String::new(),
        before: Prints {
            access: Some(fingerprint("a1")),
            refresh: Some(fingerprint("r1")),
        },
        after: Prints {
            access: Some(fingerprint("a2")),
            refresh: Some(fingerprint("r2")),
        },
    };
    app.update(Msg::Audited(vec![
        entry("payroll-sync", "refresh", 1),
        entry("expenses", "revoke", 2),
        entry("payroll-sync", "exchange", 3),
    ]));
    let shown = text_of(&render(&app, &default_theme(), 160, 40));
    assert!(shown.contains("history"), "{shown}");
    // The pane's lines before wrapping.
    let text = view::detail_text(&app, &default_theme()).unwrap();
    let rotated = "✓ refresh  agent on laptop: refresh token rotated";
    assert!(text.contains(rotated), "{text}");
    assert!(text.contains("✓ exchange  agent on laptop"), "{text}");
    assert!(
        !text.contains("revoke"),
        "another profile's entry shows: {text}"
    );
}

#[test]
fn a_filter_by_state_and_owner_at_80x24_and_120x40() {
    let mut app = app(fleet());
    app.update(key('/'));
    for c in "state:expiring,stale,ok -owner:company".chars() {
        app.update(key(c));
    }
    app.update(Msg::Key(KeyEvent::from(KeyCode::Enter)));
    let small = render(&app, &default_theme(), 80, 24);
    let text = text_of(&small);
    let header = text.lines().next().unwrap_or_default();
    assert!(
        header.contains("filter: state:expiring,stale,ok -owner:company"),
        "{header}"
    );
    for shown in ["reporting", "expenses", "time-tracking", "payroll-sync"] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }
    for hidden in ["company-hub", "ats-bridge", "old-import", "new-app"] {
        assert!(!text.contains(hidden), "{hidden} shown:\n{text}");
    }
    insta::assert_snapshot!("filtered_80x24", small.backend());
    let large = render(&app, &default_theme(), 120, 40);
    assert!(
        text_of(&large).contains("profiles 4/8"),
        "{}",
        text_of(&large)
    );
    insta::assert_snapshot!("filtered_120x40", large.backend());
}

#[test]
fn a_count_key_shows_only_that_state_and_again_all() {
    let mut app = app(fleet());
    app.update(key('4'));
    let text = text_of(&render(&app, &default_theme(), 120, 40));
    assert!(
        text.lines()
            .next()
            .unwrap_or_default()
            .contains("filter: state:expired")
    );
    assert!(
        text.contains("old-import") && !text.contains("payroll-sync"),
        "{text}"
    );
    insta::assert_snapshot!(
        "only_expired_120x40",
        render(&app, &default_theme(), 120, 40).backend()
    );
    app.update(key('4'));
    let text = text_of(&render(&app, &default_theme(), 120, 40));
    assert!(
        text.contains("payroll-sync") && !text.contains("filter:"),
        "{text}"
    );
}

#[test]
fn a_filter_that_does_not_read_says_why_and_hides_nothing() {
    let mut app = app(fleet());
    app.update(key('/'));
    for c in "state:dying".chars() {
        app.update(key(c));
    }
    let text = text_of(&render(&app, &default_theme(), 160, 40));
    let header = text.lines().next().unwrap_or_default();
    assert!(header.contains("unknown state 'dying'"), "{header}");
    assert!(text.contains("profiles 8/8"), "{text}");
}

#[test]
fn scopes_too_long_for_their_column_end_in_an_ellipsis() {
    let mut long = profile("many-scopes", Provider::Factorial);
    long.scopes = ["read", "write", "employees:read", "payroll:write", "admin"]
        .map(String::from)
        .to_vec();
    long.token = Some(user_token(60, 2 * HOUR));
    let app = app(vec![long]);
    let t = render(&app, &default_theme(), 120, 40);
    let text = text_of(&t);
    let row = text.lines().find(|l| l.contains("│many-scopes")).unwrap();
    assert!(row.contains("read write employees:re…"), "{row}");
    insta::assert_snapshot!("long_scopes_120x40", t.backend());
}

/// The detail pane of the first (broken) profile at 80x24 does not show it all: J scrolls it
/// to the end, as far as there is more and no further, and K back; its title says which way
/// there is more.
#[test]
fn the_detail_pane_scrolls_with_j_and_k_at_80x24() {
    let mut app = app(fleet());
    let area = ratatui::layout::Rect::new(0, 0, 80, 24);
    app.detail_room = view::detail_overflow(area, &app, &default_theme());
    assert!(app.detail_room > 0, "nothing to scroll");
    let top = text_of(&render(&app, &default_theme(), 80, 24));
    assert!(
        top.contains("ats-bridge (J more)") && !top.contains("│redirect"),
        "{top}"
    );
    for _ in 0..10 {
        app.update(key('J'));
    }
    let end = render(&app, &default_theme(), 80, 24);
    let text = text_of(&end);
    assert!(
        text.contains("ats-bridge (K back)") && text.contains("│redirect"),
        "{text}"
    );
    insta::assert_snapshot!("detail_scrolled_80x24", end.backend());
    app.update(key('K'));
    let back = text_of(&render(&app, &default_theme(), 80, 24));
    assert!(back.contains("ats-bridge (J/K more)"), "{back}");
    // Another profile starts at the top.
    app.update(key('j'));
    let other = text_of(&render(&app, &default_theme(), 80, 24));
    assert!(
        !other.contains("K back") && !other.contains("J/K"),
        "{other}"
    );
}

/// A value too long for its line goes on under the value, not under the label.
#[test]
fn a_long_value_wraps_under_itself_at_120x40() {
    let mut p = profile("noted", Provider::Factorial);
    p.token = Some(user_token(60, 2 * HOUR));
    p.notes = "Owned by the payroll team; rotate the client secret every quarter and tell \
               #payroll-ops before anything changes here"
        .into();
    let mut app = app(vec![p]);
    let area = ratatui::layout::Rect::new(0, 0, 120, 40);
    app.detail_room = view::detail_overflow(area, &app, &default_theme());
    for _ in 0..20 {
        app.update(key('J'));
    }
    let t = render(&app, &default_theme(), 120, 40);
    let text = text_of(&t);
    let notes = text
        .lines()
        .position(|l| l.contains("│notes"))
        .unwrap_or_else(|| panic!("no notes line: {text}"));
    // Each line of the backend's text is quoted: `"│...│"`.
    let next = text.lines().nth(notes + 1).unwrap_or_default();
    let under_value = format!("\"│{}changes here", " ".repeat(14));
    assert!(next.starts_with(&under_value), "{text}");
    insta::assert_snapshot!("detail_wrapped_120x40", t.backend());
}

/// The profile's timeline from the audit log: newest first, each step with its machine and
/// outcome, a failure in the danger colour; another profile's steps are not shown.
#[test]
fn the_detail_pane_shows_a_timeline_of_refreshes_by_machine() {
    use tokdeck::audit::{Entry, Prints, Who};
    let step = |mins: i64, host: &str, who: Who, result: &str, rotated: bool| Entry {
        at: at(-mins * 60),
        host: host.into(),
        pid: 1,
        who,
        profile: "payroll".into(),
        action: "refresh".into(),
        result: result.into(),
        detail: if result == "ok" {
            "new token saved"
        } else {
            "transient: timed out"
        }
        .into(),
        before: Prints {
            access: Some("aaaa".into()),
            refresh: Some("1111".into()),
        },
        after: Prints {
            access: Some("bbbb".into()),
            refresh: Some(if rotated { "2222" } else { "1111" }.into()),
        },
    };
    let mut other = step(1, "laptop", Who::Cli, "ok", true);
    other.profile = "someone-else".into();
    let entries = vec![
        other,
        step(2, "build-3", Who::Agent, "ok", true),
        step(62, "build-3", Who::Agent, "failed", false),
        step(122, "laptop", Who::App, "ok", false),
    ];
    let mut p = profile("payroll", Provider::Factorial);
    p.token = Some(user_token(120, 2 * HOUR));
    for (width, height) in [(80, 24), (120, 40)] {
        let mut app = app(vec![p.clone()]);
        app.update(Msg::Audited(entries.clone()));
        let area = ratatui::layout::Rect::new(0, 0, width, height);
        app.detail_room = view::detail_overflow(area, &app, &default_theme());
        for _ in 0..30 {
            app.update(key('J'));
        }
        let t = render(&app, &default_theme(), width, height);
        let text = text_of(&t);
        for wanted in [
            "history       01-15 07:58 ✓ refresh  agent on build-3: refresh token rotated",
            "01-15 06:58 ✗ refresh  agent on build-3: transient: timed out",
            "01-15 05:58 ✓ refresh  app on laptop: refresh token kept",
        ] {
            assert!(
                text.contains(wanted),
                "{width}x{height} lacks {wanted}: {text}"
            );
        }
        assert!(!text.contains("cli on laptop"), "{text}");
        let buffer = t.backend().buffer();
        let failed = buffer
            .content()
            .iter()
            .find(|cell| cell.symbol() == "✗")
            .expect("a failed step");
        assert_eq!(failed.fg, default_theme().danger);
        insta::assert_snapshot!(format!("timeline_{width}x{height}"), t.backend());
    }
}

/// The team beside a shared vault: `agents` keep it (hosts, each alive or lapsed), `laptop`
/// saved payroll's token last, build-3 holds the lease.
fn team_view(agents: &[(&str, bool)]) -> tokdeck::vault::TeamView {
    use tokdeck::team::{Agent, LastRefresh, Team};
    let agents = agents
        .iter()
        .map(|&(host, alive)| Agent {
            host: host.into(),
            pid: 41,
            version: "1.0.0".into(),
            started_at: at(-DAY),
            keeps: 2,
            beat_secs_ago: Some(if alive { 5 } else { 600 }),
            alive,
            problem: None,
            reads: None,
        })
        .collect();
    let last = LastRefresh {
        host: "laptop".into(),
        at: at(-10 * 60),
    };
    tokdeck::vault::TeamView {
        team: Team {
            agents,
            unverified: 0,
            lease: Some("build-3 pid 41 until 08:00:09 UTC".into()),
        },
        last_refresh: [("payroll".to_string(), last)].into(),
        forgotten: Vec::new(),
        reader_tags: std::collections::BTreeMap::new(),
        sealed_away: 0,
    }
}

/// The team view: the header counts the agents keeping the vault and the auto-refresh
/// profiles none keeps, each such row says so, and the detail pane names the keepers, the
/// machine that saved the token last, and the lease's holder.
#[test]
fn the_team_view_shows_who_keeps_each_profile_and_warns_when_nobody_does() {
    let mut payroll = profile("payroll", Provider::Factorial);
    payroll.auto_refresh = true;
    payroll.token = Some(user_token(10 * 60, 2 * HOUR));
    let mut hub = profile("hub", Provider::Factorial);
    hub.auto_refresh = true;
    hub.token = Some(user_token(20 * 60, 2 * HOUR));
    let mut manual = profile("manual", Provider::FactorialDemo);
    manual.token = Some(user_token(30 * 60, 2 * HOUR));
    let profiles = vec![payroll, hub, manual];
    let theme = default_theme();
    let cases = [
        ((120, 40), vec![("build-3", true), ("laptop", true)]),
        ((80, 24), vec![("build-3", false)]),
    ];
    for ((width, height), agents) in cases {
        let mut app = app(profiles.clone());
        app.update(Msg::Team(Ok(team_view(&agents))));
        let kept = agents.iter().any(|&(_, alive)| alive);
        // payroll first, whatever the order: press j until it is selected.
        while app.selected().unwrap().name != "payroll" {
            app.update(key('j'));
        }
        let t = render(&app, &theme, width, height);
        let text = format!("{:?}", t.backend());
        assert!(text.contains("lease"), "{text}");
        assert!(text.contains("on laptop"), "last saved: {text}");
        if kept {
            assert!(
                text.contains("team: 2 agents") && !text.contains("⚠"),
                "{text}"
            );
            assert!(text.contains("agents on build-3, laptop"), "{text}");
        } else {
            assert!(text.contains("team: no agent · 2 unkept"), "{text}");
            assert_eq!(text.matches("⚠ no agent").count(), 2, "{text}");
        }
        insta::assert_snapshot!(format!("team_{width}x{height}"), t.backend());
    }
    // In a vault with groups, the profiles sealed to groups this key is not in are counted.
    let mut grouped = app(profiles.clone());
    let mut view = team_view(&[("build-3", true)]);
    view.sealed_away = 2;
    grouped.update(Msg::Team(Ok(view)));
    let text = format!("{:?}", render(&grouped, &theme, 120, 40).backend());
    assert!(
        text.contains("team: 1 agent · 2 sealed to other groups"),
        "{text}"
    );
    // Without a team (a vault in a file) nothing of it shows; a team that cannot be read
    // says so in the header.
    let mut app = app(profiles);
    let alone = format!("{:?}", render(&app, &theme, 120, 40).backend());
    assert!(
        !alone.contains("team") && !alone.contains("kept by"),
        "{alone}"
    );
    app.update(Msg::Team(Err(tokdeck::vault::VaultError::Remote(
        "OpenBao at 127.0.0.1:8200 is sealed".into(),
    ))));
    let failed = format!("{:?}", render(&app, &theme, 120, 40).backend());
    assert!(failed.contains("team: unreadable"), "{failed}");
    assert!(failed.contains("is sealed"), "{failed}");
}
