//! The new/edit profile form: fields, keys, validation into a `Profile`.

use age::secrecy::SecretString;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::commands::profiles::{
    validate_base_url, validate_client_id, validate_name, validate_redirect_uri, validate_scopes,
};
use crate::vault::{Endpoints, OwnerType, Profile, Provider};

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

/// Indices into `Form::fields`.
const NAME: usize = 0;
const PROVIDER: usize = 1;
const BASE_URL: usize = 2;
const CLIENT_ID: usize = 3;
const SECRET: usize = 4;
const REDIRECT: usize = 5;
const SCOPES: usize = 6;
const OWNER: usize = 7;
const PKCE: usize = 8;
const AUTO: usize = 9;

/// The form's state.
#[derive(Debug, Clone)]
pub struct Form {
    /// The profile being edited (its name before any change), or `None` for a new one.
    pub original: Option<String>,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub error: Option<String>,
}

/// What a key did to the form.
#[derive(Debug)]
pub enum FormOutcome {
    Editing,
    Cancelled,
    Submitted(Box<Profile>),
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
        Self::with_values(
            None,
            "",
            "factorial",
            "",
            "",
            "urn:ietf:wg:oauth:2.0:oob",
            "read write",
            "user",
            false,
            false,
        )
    }

    /// A form filled from `profile`; the secret field stays empty (empty keeps it).
    pub fn edit(profile: &Profile) -> Self {
        let provider = match profile.provider {
            Provider::Factorial => "factorial",
            Provider::FactorialDemo => "factorial-demo",
            Provider::Custom => "custom",
        };
        let base = if profile.provider == Provider::Custom {
            profile.endpoints.base_url.as_str()
        } else {
            ""
        };
        Self::with_values(
            Some(profile.name.clone()),
            &profile.name,
            provider,
            base,
            &profile.client_id,
            &profile.redirect_uri,
            &profile.scope_string(),
            &profile.owner.to_string(),
            profile.pkce,
            profile.auto_refresh,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn with_values(
        original: Option<String>,
        name: &str,
        provider: &str,
        base_url: &str,
        client_id: &str,
        redirect: &str,
        scopes: &str,
        owner: &str,
        pkce: bool,
        auto: bool,
    ) -> Self {
        Self {
            original,
            fields: vec![
                field("Name", FieldKind::Text, name),
                field("Provider", FieldKind::Choice(PROVIDERS), provider),
                field("Base URL", FieldKind::Text, base_url),
                field("Client id", FieldKind::Text, client_id),
                field("Client secret", FieldKind::Secret, ""),
                field("Redirect URI", FieldKind::Text, redirect),
                field("Scopes", FieldKind::Text, scopes),
                field("Owner", FieldKind::Choice(OWNERS), owner),
                field("PKCE", FieldKind::Toggle, yes_no(pkce)),
                field("Auto-refresh", FieldKind::Toggle, yes_no(auto)),
            ],
            focus: 0,
            error: None,
        }
    }

    /// Handles a key; `existing` is every profile, for the uniqueness check and edits.
    pub fn handle_key(&mut self, key: &KeyEvent, existing: &[Profile]) -> FormOutcome {
        let field = &mut self.fields[self.focus];
        match key.code {
            KeyCode::Esc => return FormOutcome::Cancelled,
            KeyCode::Tab | KeyCode::Down => self.focus = (self.focus + 1) % self.fields.len(),
            KeyCode::BackTab | KeyCode::Up => {
                self.focus = (self.focus + self.fields.len() - 1) % self.fields.len()
            }
            KeyCode::Enter => match self.build(existing) {
                Ok(p) => return FormOutcome::Submitted(Box::new(p)),
                Err(e) => self.error = Some(e),
            },
            KeyCode::Left | KeyCode::Right | KeyCode::Char(' ')
                if matches!(field.kind, FieldKind::Choice(_) | FieldKind::Toggle) =>
            {
                let forward = key.code != KeyCode::Left;
                field.value = match field.kind {
                    FieldKind::Choice(options) => {
                        let i = options.iter().position(|o| *o == field.value).unwrap_or(0);
                        let next = if forward {
                            (i + 1) % options.len()
                        } else {
                            (i + options.len() - 1) % options.len()
                        };
                        options[next].to_string()
                    }
                    _ => yes_no(field.value != "yes").to_string(),
                };
            }
            KeyCode::Backspace if matches!(field.kind, FieldKind::Text | FieldKind::Secret) => {
                field.value.pop();
            }
            KeyCode::Char(c)
                if matches!(field.kind, FieldKind::Text | FieldKind::Secret)
                    && !key.modifiers.contains(KeyModifiers::CONTROL) =>
            {
                field.value.push(c);
            }
            _ => {}
        }
        FormOutcome::Editing
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

    fn build(&self, existing: &[Profile]) -> Result<Profile, String> {
        let name = self.value(NAME).to_string();
        validate_name(&name).map_err(|e| e.to_string())?;
        let clash = existing
            .iter()
            .any(|p| p.name == name && Some(&p.name) != self.original.as_ref());
        if clash {
            return Err(format!(
                "a profile named '{name}' already exists: choose another name"
            ));
        }
        let (provider, base_url) = match self.value(PROVIDER) {
            "factorial-demo" => (
                Provider::FactorialDemo,
                Provider::FactorialDemo
                    .base_url()
                    .unwrap_or_default()
                    .to_string(),
            ),
            "custom" => (
                Provider::Custom,
                validate_base_url(self.value(BASE_URL)).map_err(|e| e.to_string())?,
            ),
            _ => (
                Provider::Factorial,
                Provider::Factorial
                    .base_url()
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        let redirect = validate_redirect_uri(self.value(REDIRECT)).map_err(|e| e.to_string())?;
        let client_id = validate_client_id(self.value(CLIENT_ID)).map_err(|e| e.to_string())?;
        let previous = self
            .original
            .as_ref()
            .and_then(|o| existing.iter().find(|p| &p.name == o));
        let secret = match (self.value(SECRET), previous) {
            ("", Some(p)) => p.client_secret.clone(),
            ("", None) => {
                return Err(
                    "client secret is empty: paste it from the OAuth application page".into(),
                );
            }
            (s, _) => SecretString::from(s.to_string()),
        };
        let endpoints = Endpoints::at(base_url);
        let mut profile = match previous {
            Some(p) => {
                let mut p = p.clone();
                p.name = name;
                p.provider = provider;
                p.endpoints.base_url = endpoints.base_url;
                p.client_id = client_id;
                p.client_secret = secret;
                p.redirect_uri = redirect;
                p
            }
            None => Profile::new(name, provider, endpoints, client_id, secret, redirect),
        };
        profile.scopes = validate_scopes(self.value(SCOPES)).map_err(|e| e.to_string())?;
        profile.owner = if self.value(OWNER) == "company" {
            OwnerType::Company
        } else {
            OwnerType::User
        };
        profile.pkce = self.value(PKCE) == "yes";
        profile.auto_refresh = self.value(AUTO) == "yes";
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn type_text(form: &mut Form, text: &str) {
        for c in text.chars() {
            form.handle_key(&key(KeyCode::Char(c)), &[]);
        }
    }

    #[test]
    fn fills_validates_and_submits() {
        let mut form = Form::new_profile();
        assert!(matches!(
            form.handle_key(&key(KeyCode::Enter), &[]),
            FormOutcome::Editing
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
        form.handle_key(&key(KeyCode::Char(' ')), &[]);
        let FormOutcome::Submitted(p) = form.handle_key(&key(KeyCode::Enter), &[]) else {
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
        let FormOutcome::Submitted(one) = form.handle_key(&key(KeyCode::Enter), &[]) else {
            panic!()
        };
        let mut two = (*one).clone();
        two.name = "two".into();
        let all = vec![(*one).clone(), two];
        let mut edit = Form::edit(&all[0]);
        edit.fields[NAME].value = "two".into();
        edit.handle_key(&key(KeyCode::Enter), &all);
        assert!(edit.error.as_deref().unwrap().contains("already exists"));
        edit.fields[NAME].value = "renamed".into();
        let FormOutcome::Submitted(p) = edit.handle_key(&key(KeyCode::Enter), &all) else {
            panic!()
        };
        use age::secrecy::ExposeSecret;
        assert_eq!(p.client_secret.expose_secret(), "s1");
        assert_eq!(p.name, "renamed");
    }

    #[test]
    fn custom_provider_needs_a_safe_base_url() {
        let mut form = Form::new_profile();
        form.fields[NAME].value = "x".into();
        form.fields[PROVIDER].value = "custom".into();
        form.fields[BASE_URL].value = "http://example.com".into();
        form.fields[CLIENT_ID].value = "c".into();
        form.fields[SECRET].value = "s".into();
        form.handle_key(&key(KeyCode::Enter), &[]);
        assert!(form.error.as_deref().unwrap().contains("https://"));
        assert!(matches!(
            form.handle_key(&key(KeyCode::Esc), &[]),
            FormOutcome::Cancelled
        ));
    }
}
