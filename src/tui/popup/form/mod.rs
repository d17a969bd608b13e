//! The new/edit profile form: fields, keys, validation into a `Profile`.

use age::secrecy::SecretString;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::{Card, Reply, Request};
use crate::display::untrusted;
use crate::tui::keymap::{Action, FORM};
use crate::tui::theme::Theme;
use crate::vault::validate::{
    validate_base_url, validate_client_id, validate_name, validate_redirect_uri, validate_scopes,
};
use crate::vault::{AuthMethod, Endpoints, GrantType, OwnerType, Profile, Provider};

/// What kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Secret,
    Choice(&'static [&'static str]),
    Toggle,
}

/// One form field.
#[derive(Debug, Clone)]
pub struct Field {
    pub label: &'static str,
    pub kind: FieldKind,
    pub value: String,
}

const PROVIDERS: &[&str] = &["factorial", "factorial-demo", "custom"];
const OWNERS: &[&str] = &["user", "company"];
const AUTH_METHODS: &[&str] = &["post", "basic", "none"];
const GRANTS: &[&str] = &["code", "device", "client-credentials"];

/// Indices into `Form::fields`.
const NAME: usize = 0;
const PROVIDER: usize = 1;
const BASE_URL: usize = 2;
const ISSUER: usize = 3;
const CLIENT_ID: usize = 4;
const SECRET: usize = 5;
const REDIRECT: usize = 6;
const SCOPES: usize = 7;
const OWNER: usize = 8;
const AUTH: usize = 9;
const GRANT: usize = 10;
const PKCE: usize = 11;
const AUTO: usize = 12;
const PUBLISH: usize = 13;
const AUTHORIZE_PARAMS: usize = 14;

/// The form's state.
#[derive(Debug, Clone)]
pub struct Form {
    /// The profile being edited (its name before any change), or `None` for a new one.
    pub original: Option<String>,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub error: Option<String>,
}

fn field(label: &'static str, kind: FieldKind, value: impl Into<String>) -> Field {
    Field {
        label,
        kind,
        value: value.into(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
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
        let by_issuer = p.issuer.is_some();
        let base = if p.provider == Provider::Custom && !by_issuer {
            p.endpoints.base_url.as_str()
        } else {
            ""
        };
        let owner = if p.owner == OwnerType::Company {
            "company"
        } else {
            "user"
        };
        Self {
            original,
            fields: vec![
                field("Name", FieldKind::Text, p.name.as_str()),
                field("Provider", FieldKind::Choice(PROVIDERS), p.provider.flag()),
                field("Base URL", FieldKind::Text, base),
                field(
                    "Issuer",
                    FieldKind::Text,
                    p.issuer.clone().unwrap_or_default(),
                ),
                field("Client id", FieldKind::Text, p.client_id.as_str()),
                field("Client secret", FieldKind::Secret, ""),
                field("Redirect URI", FieldKind::Text, p.redirect_uri.as_str()),
                field("Scopes", FieldKind::Text, p.scope_string()),
                field("Owner", FieldKind::Choice(OWNERS), owner),
                field(
                    "Auth method",
                    FieldKind::Choice(AUTH_METHODS),
                    p.auth_method.flag(),
                ),
                field("Grant", FieldKind::Choice(GRANTS), p.grant.flag()),
                field("PKCE", FieldKind::Toggle, yes_no(p.pkce)),
                field("Auto-refresh", FieldKind::Toggle, yes_no(p.auto_refresh)),
                field("Publish", FieldKind::Toggle, yes_no(p.publish)),
                field(
                    "Extra params",
                    FieldKind::Text,
                    p.authorize_params
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            ],
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
            (Some(Action::ChoiceNext), _) if self.focused_is_choice() => self.choose(true),
            (Some(Action::ChoicePrev), _) if self.focused_is_choice() => self.choose(false),
            (Some(Action::DeleteChar), _) if self.focused_is_text() => {
                self.fields[self.focus].value.pop();
            }
            // Space is a choice key, but in a text field it is a space.
            (Some(Action::ChoiceNext), _) if self.focused_is_text() => {
                self.fields[self.focus].value.push(' ');
            }
            (None, Some(c)) if self.focused_is_text() => self.fields[self.focus].value.push(c),
            _ => {}
        }
        Reply::Stay
    }

    fn submit(&mut self, existing: &[Profile]) -> Reply {
        match self.build(existing) {
            Ok(profile) => Reply::Then(Request::Save {
                original: self.original.clone(),
                profile: Box::new(profile),
            }),
            Err(e) => {
                self.error = Some(e);
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

    fn focused_is_text(&self) -> bool {
        matches!(
            self.fields[self.focus].kind,
            FieldKind::Text | FieldKind::Secret
        )
    }

    fn focused_is_choice(&self) -> bool {
        matches!(
            self.fields[self.focus].kind,
            FieldKind::Choice(_) | FieldKind::Toggle
        )
    }

    /// Moves the focused choice or toggle one step.
    fn choose(&mut self, forward: bool) {
        let field = &mut self.fields[self.focus];
        field.value = match field.kind {
            FieldKind::Choice(options) => {
                let i = options.iter().position(|o| *o == field.value).unwrap_or(0);
                let step = if forward { 1 } else { options.len() - 1 };
                options[(i + step) % options.len()].to_string()
            }
            _ => yes_no(field.value != "yes").to_string(),
        };
    }

    pub fn card(&self, theme: &Theme) -> Card {
        let mut lines: Vec<Line<'static>> = (0..self.fields.len())
            .map(|i| self.field_line(i, theme))
            .collect();
        lines.push(Line::from(""));
        if let Some(e) = &self.error {
            lines.push(Line::styled(
                untrusted(e).into_owned(),
                Style::default().fg(theme.danger),
            ));
        }
        let title = if self.original.is_some() {
            "edit profile"
        } else {
            "new profile"
        };
        Card {
            title: title.into(),
            lines,
            width: 72,
            scroll: 0,
            layer: &FORM,
        }
    }

    fn field_line(&self, i: usize, theme: &Theme) -> Line<'static> {
        let f = &self.fields[i];
        let value = match f.kind {
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
        let cursor = focused && matches!(f.kind, FieldKind::Text | FieldKind::Secret);
        Line::from(vec![
            Span::styled(
                format!("{}{:<14}", if focused { "▶ " } else { "  " }, f.label),
                style,
            ),
            Span::styled(value, style),
            Span::raw(if cursor { "▏" } else { "" }),
        ])
    }

    /// Pastes text into the focused text field.
    pub fn paste(&mut self, text: &str) {
        let field = &mut self.fields[self.focus];
        if matches!(field.kind, FieldKind::Text | FieldKind::Secret) {
            field.value.push_str(text.trim_end_matches(['\r', '\n']));
        }
    }

    fn value(&self, i: usize) -> &str {
        self.fields[i].value.trim()
    }

    /// The secret typed, or the edited profile's when the field stays empty.
    fn secret(&self, previous: Option<&Profile>) -> Result<SecretString, String> {
        if self.value(AUTH) == "none" {
            return Ok(SecretString::from(String::new()));
        }
        match (self.value(SECRET), previous) {
            ("", Some(p)) => Ok(p.client_secret.clone()),
            ("", None) => {
                Err("client secret is empty: paste it from the OAuth application page".into())
            }
            (s, _) => Ok(SecretString::from(s.to_string())),
        }
    }

    /// The server: an issuer (its endpoints are read after the save), the preset, or the
    /// custom server's checked base URL.
    fn server(
        &self,
        previous: Option<&Profile>,
    ) -> Result<(Provider, Option<String>, Endpoints), String> {
        let issuer = self.value(ISSUER);
        if !issuer.is_empty() {
            let url = validate_base_url(issuer).map_err(|e| format!("issuer: {e}"))?;
            let kept = previous
                .filter(|p| p.issuer.as_deref() == Some(url.as_str()))
                .map(|p| p.endpoints.clone());
            let endpoints = kept.unwrap_or_else(|| Endpoints {
                explicit: true,
                ..Endpoints::at(url.clone())
            });
            return Ok((Provider::Custom, Some(url), endpoints));
        }
        let (provider, base) = self.base_server()?;
        Ok((provider, None, Endpoints::at(base)))
    }

    /// The preset, or the custom server's checked base URL. A base URL typed while a preset
    /// is chosen makes the server custom, as `--base-url` alone does in the CLI: what was
    /// typed is never dropped.
    fn base_server(&self) -> Result<(Provider, String), String> {
        let typed = self.value(BASE_URL).trim();
        let preset = match self.value(PROVIDER) {
            "custom" => None,
            "factorial-demo" => Some(Provider::FactorialDemo),
            _ => Some(Provider::Factorial),
        };
        let preset_url = preset.and_then(Provider::base_url);
        match (preset, preset_url) {
            (Some(preset), Some(url)) if typed.is_empty() => Ok((preset, url.to_string())),
            _ => {
                let url = validate_base_url(typed).map_err(|e| e.to_string())?;
                match preset.zip(preset_url) {
                    Some((preset, preset_url)) if url == preset_url => Ok((preset, url)),
                    _ => Ok((Provider::Custom, url)),
                }
            }
        }
    }

    fn build(&self, existing: &[Profile]) -> Result<Profile, String> {
        let name = self.value(NAME).to_string();
        validate_name(&name).map_err(|e| e.to_string())?;
        let clash = existing.iter().find(|p| {
            p.name.eq_ignore_ascii_case(&name) && Some(&p.name) != self.original.as_ref()
        });
        if let Some(taken) = clash {
            return Err(format!(
                "a profile named '{}' already exists (names are compared ignoring case): choose another name",
                taken.name
            ));
        }
        let previous = self.saved(existing);
        let (provider, issuer, endpoints) = self.server(previous)?;
        let grant = match self.value(GRANT) {
            "device" => GrantType::Device,
            "client-credentials" => GrantType::ClientCredentials,
            _ => GrantType::Code,
        };
        let redirect = match self.value(REDIRECT) {
            "" if grant != GrantType::Code => String::new(),
            uri => validate_redirect_uri(uri).map_err(|e| e.to_string())?,
        };
        let client_id = validate_client_id(self.value(CLIENT_ID)).map_err(|e| e.to_string())?;
        let secret = self.secret(previous)?;
        let mut profile = match previous {
            Some(p) => {
                let mut p = p.clone();
                p.name = name;
                p.provider = provider;
                if p.issuer != issuer || issuer.is_none() {
                    p.server = None;
                }
                p.endpoints = endpoints;
                p.client_id = client_id;
                p.client_secret = secret;
                p.redirect_uri = redirect;
                p
            }
            None => Profile::new(name, provider, endpoints, client_id, secret, redirect),
        };
        profile.scopes = validate_scopes(self.value(SCOPES)).map_err(|e| e.to_string())?;
        profile.issuer = issuer;
        profile.grant = grant;
        profile.auth_method = match self.value(AUTH) {
            "basic" => AuthMethod::Basic,
            "none" => AuthMethod::None,
            _ => AuthMethod::Post,
        };
        profile.owner = match (grant, self.value(OWNER)) {
            (GrantType::ClientCredentials, _) => OwnerType::App,
            (_, "company") => OwnerType::Company,
            _ => OwnerType::User,
        };
        profile.pkce = self.value(PKCE) == "yes";
        profile.auto_refresh = self.value(AUTO) == "yes";
        profile.publish = self.value(PUBLISH) == "yes";
        profile.authorize_params = authorize_params(self.value(AUTHORIZE_PARAMS))?;
        Ok(profile)
    }
}

/// The form's "Extra params": `KEY=VALUE` pairs separated by spaces, each checked as
/// `--authorize-param` is; `KEY=` leaves the key out.
fn authorize_params(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    text.split_whitespace()
        .map(crate::vault::validate::validate_authorize_param)
        .filter(|p| p.as_ref().map_or(true, |(_, v)| !v.is_empty()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_params_are_pairs_checked_like_the_flag() {
        let params = authorize_params("prompt=consent  audience=https://api.example x=").unwrap();
        assert_eq!(params.len(), 2);
        assert_eq!(params["prompt"], "consent");
        assert!(
            authorize_params("state=x")
                .unwrap_err()
                .contains("tokdeck sets state")
        );
        assert!(
            authorize_params("novalue")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
    }

    fn type_text(form: &mut Form, text: &str) {
        for c in text.chars() {
            form.on_key(None, Some(c), &[]);
        }
    }

    fn submitted(reply: Reply) -> Option<Box<Profile>> {
        match reply {
            Reply::Then(Request::Save { profile, .. }) => Some(profile),
            _ => None,
        }
    }

    #[test]
    fn fills_validates_and_submits() {
        let mut form = Form::new_profile();
        assert!(matches!(
            form.on_key(Some(Action::Submit), None, &[]),
            Reply::Stay
        ));
        assert!(
            form.error
                .as_deref()
                .unwrap()
                .contains("invalid profile name")
        );
        type_text(&mut form, "acme");
        form.focus = CLIENT_ID;
        type_text(&mut form, "cid");
        form.focus = SECRET;
        type_text(&mut form, "sek");
        form.focus = OWNER;
        form.on_key(Some(Action::ChoiceNext), None, &[]);
        let Some(p) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
            panic!("not submitted: {:?}", form.error);
        };
        assert_eq!(p.name, "acme");
        assert_eq!(p.owner, OwnerType::Company);
        assert_eq!(p.scopes, ["read", "write"]);
    }

    #[test]
    fn edit_keeps_secret_and_token_and_refuses_clashes() {
        let mut form = Form::new_profile();
        type_text(&mut form, "one");
        form.focus = CLIENT_ID;
        type_text(&mut form, "c");
        form.focus = SECRET;
        type_text(&mut form, "s1");
        let Some(one) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
            panic!()
        };
        let mut two = (*one).clone();
        two.name = "two".into();
        let all = vec![(*one).clone(), two];
        let mut edit = Form::edit(&all[0]);
        edit.fields[NAME].value = "two".into();
        edit.on_key(Some(Action::Submit), None, &all);
        assert!(edit.error.as_deref().unwrap().contains("already exists"));
        edit.fields[NAME].value = "renamed".into();
        let Some(p) = submitted(edit.on_key(Some(Action::Submit), None, &all)) else {
            panic!()
        };
        assert_eq!(
            age::secrecy::ExposeSecret::expose_secret(&p.client_secret),
            "s1"
        );
        assert_eq!(p.name, "renamed");
    }

    #[test]
    fn an_issuer_makes_an_explicit_profile_to_discover_and_grants_set_the_owner() {
        let mut form = Form::new_profile();
        form.fields[NAME].value = "dot".into();
        form.fields[ISSUER].value = "https://auth.example.com/o".into();
        form.fields[CLIENT_ID].value = "c".into();
        form.fields[REDIRECT].value = String::new();
        form.fields[AUTH].value = "none".into();
        form.fields[GRANT].value = "device".into();
        let Some(p) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
            panic!("not submitted: {:?}", form.error);
        };
        assert_eq!(p.issuer.as_deref(), Some("https://auth.example.com/o"));
        assert!(p.endpoints.explicit && p.endpoints.token_url.is_none());
        assert_eq!(
            (p.auth_method, p.grant),
            (AuthMethod::None, GrantType::Device)
        );
        assert!(p.uses_pkce());
        // Rediscover needs the saved profile.
        let mut edit = Form::edit(&p);
        assert!(matches!(
            edit.on_key(Some(Action::Rediscover), None, std::slice::from_ref(&*p)),
            Reply::Then(Request::Rediscover(name)) if name == "dot"
        ));
        edit.fields[GRANT].value = "client-credentials".into();
        edit.fields[AUTH].value = "basic".into();
        edit.fields[SECRET].value = "s".into();
        let Some(app) = submitted(edit.on_key(Some(Action::Submit), None, &[*p])) else {
            panic!("not submitted: {:?}", edit.error);
        };
        assert_eq!(app.owner, OwnerType::App);
    }

    #[test]
    fn a_base_url_typed_with_a_preset_makes_the_server_custom() {
        let mut form = Form::new_profile();
        form.fields[NAME].value = "x".into();
        form.fields[PROVIDER].value = "factorial".into();
        form.fields[BASE_URL].value = "https://auth.example.com".into();
        form.fields[CLIENT_ID].value = "c".into();
        form.fields[SECRET].value = "s".into();
        let Some(p) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
            panic!("not submitted: {:?}", form.error);
        };
        assert_eq!(p.provider, Provider::Custom);
        assert_eq!(p.endpoints.base_url, "https://auth.example.com");
        // The preset's own URL typed out keeps the preset.
        let mut same = Form::new_profile();
        same.fields[NAME].value = "y".into();
        same.fields[BASE_URL].value = "https://api.factorialhr.com/".into();
        same.fields[CLIENT_ID].value = "c".into();
        same.fields[SECRET].value = "s".into();
        let Some(p) = submitted(same.on_key(Some(Action::Submit), None, &[])) else {
            panic!("not submitted: {:?}", same.error);
        };
        assert_eq!(p.provider, Provider::Factorial);
    }

    #[test]
    fn custom_provider_needs_a_safe_base_url() {
        let mut form = Form::new_profile();
        form.fields[NAME].value = "x".into();
        form.fields[PROVIDER].value = "custom".into();
        form.fields[BASE_URL].value = "http://example.com".into();
        form.fields[CLIENT_ID].value = "c".into();
        form.fields[SECRET].value = "s".into();
        form.on_key(Some(Action::Submit), None, &[]);
        assert!(form.error.as_deref().unwrap().contains("https://"));
        assert!(matches!(
            form.on_key(Some(Action::Cancel), None, &[]),
            Reply::Close
        ));
    }
}
