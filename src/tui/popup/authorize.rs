//! The authorize popup: the URL, how it was delivered, and what to do next.

use std::net::SocketAddr;

use ratatui::style::Style;
use ratatui::text::Line;

use super::{Card, Reply, Request};
use crate::display::untrusted;
use crate::tui::keymap::{AUTHORIZE, Action};
use crate::tui::theme::Theme;
use crate::worker::JobId;

/// The authorize popup.
#[derive(Debug, Clone)]
pub struct Authorize {
    pub profile: String,
    pub job: JobId,
    pub url: Option<String>,
    pub listening_on: Option<SocketAddr>,
}

impl Authorize {
    pub fn new(profile: String, job: JobId) -> Self {
        Self {
            profile,
            job,
            url: None,
            listening_on: None,
        }
    }

    pub fn on_action(&self, action: Option<Action>) -> Reply {
        match action {
            Some(Action::PasteCode) if self.listening_on.is_none() => Reply::Then(Request::Paste {
                profile: self.profile.clone(),
            }),
            Some(Action::CopyUrl) => match &self.url {
                Some(url) => Reply::Then(Request::CopyUrl(url.clone())),
                None => Reply::Stay,
            },
            // Closing while the listener waits stops it: nobody is left to watch it.
            Some(Action::Cancel) if self.listening_on.is_some() => {
                Reply::Then(Request::StopListener {
                    profile: self.profile.clone(),
                    job: self.job,
                })
            }
            Some(Action::Cancel) => Reply::Close,
            _ => Reply::Stay,
        }
    }

    pub fn card(&self, theme: &Theme) -> Card {
        let muted = Style::default().fg(theme.muted);
        let mut lines = vec![Line::from(format!(
            "Authorize {}",
            untrusted(&self.profile)
        ))];
        match &self.url {
            None => lines.push(Line::styled("building the URL…", muted)),
            Some(url) => {
                lines.push(Line::from(""));
                lines.push(Line::styled(
                    untrusted(url).into_owned(),
                    Style::default().fg(theme.accent),
                ));
                lines.push(Line::from(""));
                lines.push(Line::from(
                    "Sent to the terminal's clipboard (OSC 52); opened in a browser when one is available.",
                ));
                lines.push(Line::from(match self.listening_on {
                    Some(addr) => {
                        format!("Waiting for the redirect on {addr}… Esc stops listening.")
                    }
                    None => {
                        "Approve it, then press e (or Enter) to paste the code or redirect URL."
                            .into()
                    }
                }));
            }
        }
        Card {
            title: "authorize".into(),
            lines,
            width: 70,
            scroll: 0,
            layer: &AUTHORIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_stops_a_listener_but_only_closes_otherwise() {
        let mut popup = Authorize::new("p".into(), 4);
        assert!(matches!(
            popup.on_action(Some(Action::Cancel)),
            Reply::Close
        ));
        popup.listening_on = Some("127.0.0.1:9".parse().unwrap());
        assert!(matches!(
            popup.on_action(Some(Action::Cancel)),
            Reply::Then(Request::StopListener { job: 4, .. })
        ));
        assert!(matches!(
            popup.on_action(Some(Action::PasteCode)),
            Reply::Stay
        ));
    }
}
