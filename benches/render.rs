//! One frame of the main screen at 200x50 with 10,000 profiles, and one countdown tick
//! (state update + render).

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod support;

use std::time::Duration;

use chrono::FixedOffset;
use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokdeck::tui::app::{App, Msg, Settings};
use tokdeck::tui::theme::Theme;
use tokdeck::tui::view;

fn app(n: usize) -> App {
    App::new(
        support::profiles(n, "https://api.factorialhr.com", support::at(0), |i| {
            format!("r{i}")
        }),
        support::at(0),
        Settings {
            warn: Duration::from_secs(86_400),
            refresh_margin: Duration::from_secs(300),
            vault_label: "vault.age".into(),
            utc_offset: FixedOffset::east_opt(0).unwrap(),
            read_only_reason: None,
        },
    )
}

fn render(c: &mut Criterion) {
    let theme = Theme::built_in("default").unwrap();
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let mut group = c.benchmark_group("render");
    group.measurement_time(Duration::from_secs(4));
    let mut app = app(10_000);
    group.bench_function("frame_10000", |b| {
        b.iter(|| terminal.draw(|f| view::draw(f, &app, &theme)).unwrap().area)
    });
    let mut second = 0;
    group.bench_function("tick_10000", |b| {
        b.iter(|| {
            second += 1;
            app.update(Msg::Tick(support::at(second % 3_600)));
            terminal.draw(|f| view::draw(f, &app, &theme)).unwrap().area
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
