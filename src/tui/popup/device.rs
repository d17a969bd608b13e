//! The device login popup (RFC 8628): the code to type, where to type it, and how long it
//! stays good. The worker polls meanwhile; Esc stops it.

use chrono::{DateTime, Utc};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;

use super::{Card, Reply, Request};
use crate::display::untrusted;
use crate::duration::format_countdown;
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

    pub fn card(&self, theme: &Theme, now: DateTime<Utc>) -> Card {
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
            width: 70,
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
