//! The new/edit profile form: every setting `add` takes, on two pages (the app, then more),
//! keys, and validation into a `Profile` (the `build` module).

mod build;
mod fields;

use age::secrecy::SecretString;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::{Card, Reply, Request};
use crate::display::untrusted;
use crate::tui::keymap::{Action, FORM};
use crate::tui::theme::Theme;
use crate::vault::{AuthMethod, Endpoints, OwnerType, Profile, Provider};
pub use fields::{FieldId, FieldKind};
use fields::{PAGES, yes_no};

/// One form field and what is typed or chosen in it.
#[derive(Debug, Clone)]
pub struct Field {
    pub id: FieldId,
    pub value: String,
}

/// The form's state.
#[derive(Debug, Clone)]
pub struct Form {
    /// The profile being edited (its name before any change), or `None` for a new one.
    pub original: Option<String>,
    /// Every field, page by page.
    pub fields: Vec<Field>,
    /// The index in `fields` of the focused one; its page is the one shown.
    pub focus: usize,
    pub error: Option<String>,
}

impl Form {
    /// An empty form for a new Factorial profile.
    pub fn new_profile() -> Self {
        let mut template = Profile::new(
            String::new(),
            Provider::Factorial,
            Endpoints::at(""),
            String::new(),
            SecretString::from(String::new()),
            "urn:ietf:wg:oauth:2.0:oob".into(),
        );
        template.scopes = vec!["read".into(), "write".into()];
        Self::from_profile(None, &template)
    }

    /// A form filled from `profile`; the secret field stays empty (empty keeps it).
    pub fn edit(profile: &Profile) -> Self {
        Self::from_profile(Some(profile.name.clone()), profile)
    }

    fn from_profile(original: Option<String>, p: &Profile) -> Self {
        let fields = fields::all()
            .map(|id| Field {
                id,
                value: initial(id, p),
            })
            .collect();
        Self {
            original,
            fields,
            focus: 0,
            error: None,
        }
    }

    /// Handles a key; `existing` is every profile, for the uniqueness check and edits.
    pub fn on_key(
        &mut self,
        action: Option<Action>,
        typed: Option<char>,
        existing: &[Profile],
    ) -> Reply {
        let count = self.fields.len();
        match (action, typed) {
            (Some(Action::Cancel), _) => return Reply::Close,
            (Some(Action::Submit), _) => return self.submit(existing),
            (Some(Action::Rediscover), _) => return self.rediscover(existing),
            (Some(Action::NextField), _) => self.focus = (self.focus + 1) % count,
            (Some(Action::PrevField), _) => self.focus = (self.focus + count - 1) % count,
            (Some(Action::PageDown | Action::PageUp), _) => self.other_page(),
            (Some(Action::ChoiceNext), _) if self.focused_is_choice() => self.choose(true),
            (Some(Action::ChoicePrev), _) if self.focused_is_choice() => self.choose(false),
            (Some(Action::DeleteChar), _) if self.focused_is_text() => {
                self.fields[self.focus].value.pop();
                self.follow_base_url();
            }
            // Space is a choice key, but in a text field it is a space.
            (Some(Action::ChoiceNext), _) if self.focused_is_text() => self.type_text(" "),
            (None, Some(c)) if self.focused_is_text() => self.type_text(c.encode_utf8(&mut [0; 4])),
            _ => {}
        }
        Reply::Stay
    }

    fn type_text(&mut self, text: &str) {
        self.fields[self.focus].value.push_str(text);
        self.follow_base_url();
    }

    /// A base URL typed makes the provider the preset of that URL, or custom: the Provider
    /// field shows what a save will store.
    fn follow_base_url(&mut self) {
        if self.fields[self.focus].id != FieldId::BaseUrl {
            return;
        }
        let typed = self
            .value(FieldId::BaseUrl)
            .trim_end_matches('/')
            .to_string();
        if typed.is_empty() {
            return;
        }
        let preset = fields::PROVIDERS
            .into_iter()
            .find(|p| p.base_url().is_some_and(|url| url == typed))
            .unwrap_or(Provider::Custom);
        self.set(FieldId::Provider, preset.flag());
    }

    /// Focuses the first field of the page not shown.
    fn other_page(&mut self) {
        let page = (self.field(self.focus).page() + 1) % PAGES.len();
        let first = PAGES[page].1[0];
        self.focus = self.index_of(first);
    }

    fn submit(&mut self, existing: &[Profile]) -> Reply {
        match self.build(existing) {
            Ok(profile) => Reply::Then(Request::Save {
                original: self.original.clone(),
                profile: Box::new(profile),
            }),
            Err(invalid) => {
                self.focus = self.index_of(invalid.field);
                self.error = Some(invalid.message);
                Reply::Stay
            }
        }
    }

    /// The profile being edited, as saved.
    fn saved<'a>(&self, existing: &'a [Profile]) -> Option<&'a Profile> {
        let original = self.original.as_ref()?;
        existing.iter().find(|p| &p.name == original)
    }

    /// Reads the edited profile's endpoints again from its issuer (the worker does it).
    fn rediscover(&mut self, existing: &[Profile]) -> Reply {
        match self.saved(existing) {
            Some(p) if p.issuer.is_some() => Reply::Then(Request::Rediscover(p.name.clone())),
            _ => {
                self.error = Some(
                    "only a saved profile with an issuer can be rediscovered: fill in Issuer and save first".into(),
                );
                Reply::Stay
            }
        }
    }

    fn field(&self, at: usize) -> FieldId {
        self.fields[at].id
    }

    fn index_of(&self, id: FieldId) -> usize {
        self.fields.iter().position(|f| f.id == id).unwrap_or(0)
    }

    /// A field's value, trimmed.
    pub fn value(&self, id: FieldId) -> &str {
        self.raw(id).trim()
    }

    fn raw(&self, id: FieldId) -> &str {
        self.fields
            .iter()
            .find(|f| f.id == id)
            .map_or("", |f| f.value.as_str())
    }

    /// Sets a field's value (what typing or choosing in it does).
    pub fn set(&mut self, id: FieldId, value: &str) {
        if let Some(f) = self.fields.iter_mut().find(|f| f.id == id) {
            f.value = value.to_string();
        }
    }

    /// Focuses a field.
    pub fn focus_on(&mut self, id: FieldId) {
        self.focus = self.index_of(id);
    }

    /// A public client has no secret: its field takes nothing.
    fn secret_unused(&self) -> bool {
        self.auth_method() == AuthMethod::None
    }

    fn focused_is_text(&self) -> bool {
        match self.field(self.focus).kind() {
            FieldKind::Text => true,
            FieldKind::Secret => !self.secret_unused(),
            _ => false,
        }
    }

    fn focused_is_choice(&self) -> bool {
        matches!(
            self.field(self.focus).kind(),
            FieldKind::Choice(_) | FieldKind::Toggle
        )
    }

    /// Moves the focused choice or toggle one step.
    fn choose(&mut self, forward: bool) {
        let field = &mut self.fields[self.focus];
        field.value = match field.id.kind() {
            FieldKind::Choice(options) => {
                let i = options.iter().position(|o| *o == field.value).unwrap_or(0);
                let step = if forward { 1 } else { options.len() - 1 };
                options[(i + step) % options.len()].to_string()
            }
            _ => yes_no(field.value != yes_no(true)).to_string(),
        };
    }

    pub fn card(&self, theme: &Theme) -> Card {
        let page = self.field(self.focus).page();
        let mut lines: Vec<Line<'static>> = (0..self.fields.len())
            .filter(|&i| self.field(i).page() == page)
            .map(|i| self.field_line(i, theme))
            .collect();
        lines.push(Line::from(""));
        if let Some(e) = &self.error {
            lines.push(Line::styled(
                untrusted(e).into_owned(),
                Style::default().fg(theme.danger),
            ));
        }
        let kind = if self.original.is_some() {
            "edit profile"
        } else {
            "new profile"
        };
        Card {
            title: format!(
                "{kind}: {} ({}/{}, PgDn other page)",
                PAGES[page].0,
                page + 1,
                PAGES.len()
            ),
            lines,
            width: 72,
            scroll: 0,
            layer: &FORM,
        }
    }

    fn field_line(&self, i: usize, theme: &Theme) -> Line<'static> {
        let f = &self.fields[i];
        let value = match f.id.kind() {
            FieldKind::Secret if self.secret_unused() => "(none: a public client)".to_string(),
            FieldKind::Secret if f.value.is_empty() && self.original.is_some() => {
                "(unchanged)".to_string()
            }
            FieldKind::Secret => "•".repeat(f.value.chars().count()),
            FieldKind::Choice(_) | FieldKind::Toggle => format!("‹ {} ›", f.value),
            FieldKind::Text => untrusted(&f.value).into_owned(),
        };
        let focused = i == self.focus;
        let style = if focused {
            Style::default()
                .fg(theme.accent)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(theme.text)
        };
        let cursor = focused && self.focused_is_text();
        Line::from(vec![
            Span::styled(
                format!("{}{:<15}", if focused { "▶ " } else { "  " }, f.id.label()),
                style,
            ),
            Span::styled(value, style),
            Span::raw(if cursor { "▏" } else { "" }),
        ])
    }

    /// Pastes text into the focused text field.
    pub fn paste(&mut self, text: &str) {
        if self.focused_is_text() {
            self.type_text(text.trim_end_matches(['\r', '\n']));
        }
    }
}

/// What field `id` shows first for profile `p`.
fn initial(id: FieldId, p: &Profile) -> String {
    let by_issuer = p.issuer.is_some();
    // Named endpoints show only where they were named: an issuer's are read from its metadata.
    let named = |url: &Option<String>| {
        (p.endpoints.explicit && !by_issuer)
            .then(|| url.clone())
            .flatten()
            .unwrap_or_default()
    };
    match id {
        FieldId::Name => p.name.clone(),
        FieldId::Provider => p.provider.flag().into(),
        FieldId::BaseUrl if p.provider == Provider::Custom && !by_issuer => {
            p.endpoints.base_url.clone()
        }
        FieldId::Issuer => p.issuer.clone().unwrap_or_default(),
        FieldId::ClientId => p.client_id.clone(),
        FieldId::Redirect => p.redirect_uri.clone(),
        FieldId::Scopes => p.scope_string(),
        FieldId::Owner if p.owner == OwnerType::Company => OwnerType::Company.to_string(),
        FieldId::Owner => OwnerType::User.to_string(),
        FieldId::Auth => p.auth_method.flag().into(),
        FieldId::Grant => p.grant.flag().into(),
        FieldId::Pkce => yes_no(p.pkce).into(),
        FieldId::AutoRefresh => yes_no(p.auto_refresh).into(),
        FieldId::Publish => yes_no(p.publish).into(),
        FieldId::AuthorizeUrl => named(&p.endpoints.authorize_url),
        FieldId::TokenUrl => named(&p.endpoints.token_url),
        FieldId::RefreshWindow => crate::duration::format_duration(p.refresh_window),
        FieldId::EnvVar => p.env_var.clone().unwrap_or_default(),
        FieldId::Group => p.group.clone().unwrap_or_default(),
        FieldId::Notes => p.notes.clone(),
        FieldId::AuthorizeParams => p
            .authorize_params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        FieldId::BaseUrl | FieldId::Secret => String::new(),
    }
}

#[cfg(test)]
mod tests;
