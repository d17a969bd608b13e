//! The device login popup (RFC 8628): the code to type, where to type it, and how long it
//! stays good. The worker polls meanwhile; Esc stops it.

use chrono::{DateTime, Utc};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::{Card, Reply, Request};
use crate::display::untrusted;
use crate::duration::format_countdown;
use crate::qr::Qr;
use crate::tui::keymap::{Action, DEVICE};
use crate::tui::theme::Theme;
use crate::worker::JobId;

/// What the server handed out for the login.
#[derive(Debug, Clone)]
pub struct Shown {
    pub user_code: String,
    pub verification_uri: String,
    pub uri_to_open: String,
    pub expires_at: DateTime<Utc>,
}

/// Columns wide, borders included.
const WIDTH: u16 = 70;

/// Lines the popup adds around its text: borders, the blank line and the hint line.
const CHROME_ROWS: usize = 5;

/// The address as a QR code when it fits in `room` below `text_rows` rows of text, else a
/// line that says what size it needs.
fn qr_lines(address: &str, text_rows: usize, room: (u16, u16), muted: Style) -> Vec<Line<'static>> {
    let Some(qr) = Qr::of(address) else {
        return Vec::new();
    };
    let needed_width = qr.columns() + 4;
    let needed_height = text_rows + qr.rows() + CHROME_ROWS;
    let (width, height) = (usize::from(room.0), usize::from(room.1));
    let popup_width = width.min(usize::from(WIDTH));
    if needed_width > popup_width || needed_height > height {
        return vec![Line::styled(
            format!(
                "(a QR code of the address needs a terminal of {}x{}; this one is {}x{})",
                needed_width.max(width),
                needed_height,
                width,
                height
            ),
            muted,
        )];
    }
    // White on black, whatever the theme: a scanner wants light margins and dark modules.
    let paper = Style::default().fg(Color::White).bg(Color::Black);
    qr.cells()
        .into_iter()
        .map(|row| {
            let inked: String = row.into_iter().map(crate::qr::ink).collect();
            Line::from(vec![Span::raw(" "), Span::styled(inked, paper)])
        })
        .collect()
}

/// The device login popup.
#[derive(Debug, Clone)]
pub struct Device {
    pub profile: String,
    pub job: JobId,
    /// `None` until the server has answered.
    pub shown: Option<Shown>,
}

impl Device {
    pub fn new(profile: String, job: JobId) -> Self {
        Self {
            profile,
            job,
            shown: None,
        }
    }

    pub fn on_action(&self, action: Option<Action>) -> Reply {
        match (action, &self.shown) {
            (Some(Action::CopyUrl), Some(s)) => Reply::Then(Request::Copy {
                text: s.uri_to_open.clone(),
                what: "the login address".into(),
            }),
            (Some(Action::CopyCode), Some(s)) => Reply::Then(Request::Copy {
                text: s.user_code.clone(),
                what: "the login code".into(),
            }),
            // Nobody is left to approve: the polling stops and the profile is free.
            (Some(Action::Cancel), _) => Reply::Then(Request::StopListener {
                profile: self.profile.clone(),
                job: self.job,
            }),
            _ => Reply::Stay,
        }
    }

    /// The popup; `room` is the screen's size, which decides whether the address's QR code
    /// fits (it is left out, with a note, when it does not).
    pub fn card(&self, theme: &Theme, now: DateTime<Utc>, room: (u16, u16)) -> Card {
        let muted = Style::default().fg(theme.muted);
        let mut lines = vec![Line::from(format!(
            "Log in {} on any device",
            untrusted(&self.profile)
        ))];
        match &self.shown {
            None => lines.push(Line::styled("asking the server for a code…", muted)),
            Some(s) => {
                let left = (s.expires_at - now).num_seconds();
                lines.extend([
                    Line::from(""),
                    Line::from("Open"),
                    Line::styled(
                        format!("  {}", untrusted(&s.uri_to_open)),
                        Style::default().fg(theme.accent),
                    ),
                    Line::from("and enter the code"),
                    Line::styled(
                        format!("  {}", untrusted(&s.user_code)),
                        Style::default()
                            .fg(theme.accent)
                            .add_modifier(Modifier::BOLD),
                    ),
                ]);
                lines.extend(qr_lines(&s.uri_to_open, lines.len(), room, muted));
                lines.extend([
                    Line::from(""),
                    Line::styled(
                        if left > 0 {
                            format!(
                                "Waiting for approval… the code ends in {}.",
                                format_countdown(left)
                            )
                        } else {
                            "The code has expired.".to_string()
                        },
                        muted,
                    ),
                ]);
            }
        }
        Card {
            title: "device login".into(),
            lines,
            width: WIDTH,
            scroll: 0,
            layer: &DEVICE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_address_or_the_code_and_escape_stops_the_polling() {
        let mut popup = Device::new("p".into(), 3);
        assert!(matches!(
            popup.on_action(Some(Action::CopyCode)),
            Reply::Stay
        ));
        popup.shown = Some(Shown {
            user_code: "WDJB-MJHT".into(),
            verification_uri: "https://ex/device".into(),
            uri_to_open: "https://ex/device?user_code=WDJB-MJHT".into(),
            expires_at: DateTime::from_timestamp(1_000, 0).unwrap(),
        });
        assert!(matches!(
            popup.on_action(Some(Action::CopyCode)),
            Reply::Then(Request::Copy { text, .. }) if text == "WDJB-MJHT"
        ));
        assert!(matches!(
            popup.on_action(Some(Action::CopyUrl)),
            Reply::Then(Request::Copy { text, .. }) if text.ends_with("WDJB-MJHT")
        ));
        assert!(matches!(
            popup.on_action(Some(Action::Cancel)),
            Reply::Then(Request::StopListener { job: 3, .. })
        ));
    }
}
