//! The form's keys and checks, without a terminal.

use super::build::authorize_params;
use super::*;
use crate::vault::GrantType;

#[test]
fn extra_params_are_pairs_checked_like_the_flag() {
    let params = authorize_params("prompt=consent  audience=https://api.example x=").unwrap();
    assert_eq!(params.len(), 2);
    assert_eq!(params["prompt"], "consent");
    assert!(
        authorize_params("state=x")
            .unwrap_err()
            .to_string()
            .contains("tokdeck sets state")
    );
    assert!(
        authorize_params("novalue")
            .unwrap_err()
            .to_string()
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
    form.focus_on(FieldId::ClientId);
    type_text(&mut form, "cid");
    form.focus_on(FieldId::Secret);
    type_text(&mut form, "sek");
    form.focus_on(FieldId::Owner);
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
    form.focus_on(FieldId::ClientId);
    type_text(&mut form, "c");
    form.focus_on(FieldId::Secret);
    type_text(&mut form, "s1");
    let Some(one) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
        panic!()
    };
    let mut two = (*one).clone();
    two.name = "two".into();
    let all = vec![(*one).clone(), two];
    let mut edit = Form::edit(&all[0]);
    edit.set(FieldId::Name, "two");
    edit.on_key(Some(Action::Submit), None, &all);
    assert!(edit.error.as_deref().unwrap().contains("already exists"));
    edit.set(FieldId::Name, "renamed");
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
    form.set(FieldId::Name, "dot");
    form.set(FieldId::Issuer, "https://auth.example.com/o");
    form.set(FieldId::ClientId, "c");
    form.set(FieldId::Redirect, "");
    form.set(FieldId::Auth, "none");
    form.set(FieldId::Grant, "device");
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
    edit.set(FieldId::Grant, "client-credentials");
    edit.set(FieldId::Auth, "basic");
    edit.set(FieldId::Secret, "s");
    let Some(app) = submitted(edit.on_key(Some(Action::Submit), None, &[*p])) else {
        panic!("not submitted: {:?}", edit.error);
    };
    assert_eq!(app.owner, OwnerType::App);
}

#[test]
fn a_base_url_typed_with_a_preset_makes_the_server_custom() {
    let mut form = Form::new_profile();
    form.set(FieldId::Name, "x");
    form.set(FieldId::Provider, "factorial");
    form.set(FieldId::BaseUrl, "https://auth.example.com");
    form.set(FieldId::ClientId, "c");
    form.set(FieldId::Secret, "s");
    let Some(p) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
        panic!("not submitted: {:?}", form.error);
    };
    assert_eq!(p.provider, Provider::Custom);
    assert_eq!(p.endpoints.base_url, "https://auth.example.com");
    // The preset's own URL typed out keeps the preset.
    let mut same = Form::new_profile();
    same.set(FieldId::Name, "y");
    same.set(FieldId::BaseUrl, "https://api.factorialhr.com/");
    same.set(FieldId::ClientId, "c");
    same.set(FieldId::Secret, "s");
    let Some(p) = submitted(same.on_key(Some(Action::Submit), None, &[])) else {
        panic!("not submitted: {:?}", same.error);
    };
    assert_eq!(p.provider, Provider::Factorial);
}

#[test]
fn custom_provider_needs_a_safe_base_url() {
    let mut form = Form::new_profile();
    form.set(FieldId::Name, "x");
    form.set(FieldId::Provider, "custom");
    form.set(FieldId::BaseUrl, "http://example.com");
    form.set(FieldId::ClientId, "c");
    form.set(FieldId::Secret, "s");
    form.on_key(Some(Action::Submit), None, &[]);
    assert!(form.error.as_deref().unwrap().contains("https://"));
    assert!(matches!(
        form.on_key(Some(Action::Cancel), None, &[]),
        Reply::Close
    ));
}

fn filled(name: &str) -> Form {
    let mut form = Form::new_profile();
    form.set(FieldId::Name, name);
    form.set(FieldId::ClientId, "c");
    form.set(FieldId::Secret, "s");
    form
}

fn typed_into(form: &mut Form, id: FieldId, text: &str) {
    form.focus_on(id);
    type_text(form, text);
}

#[test]
fn the_provider_follows_a_typed_base_url() {
    let mut form = Form::new_profile();
    typed_into(&mut form, FieldId::BaseUrl, "https://auth.example.com");
    assert_eq!(form.value(FieldId::Provider), "custom");
    form.set(FieldId::BaseUrl, "");
    typed_into(
        &mut form,
        FieldId::BaseUrl,
        "https://api.eu2.demo.factorial.dev/",
    );
    assert_eq!(form.value(FieldId::Provider), "factorial-demo");
}

#[test]
fn a_refusal_moves_the_focus_to_its_field_on_its_page() {
    let theme = crate::tui::theme::Theme::monochrome();
    let mut form = filled("x");
    form.set(FieldId::TokenUrl, "http://auth.example.com/token");
    form.on_key(Some(Action::Submit), None, &[]);
    assert_eq!(form.fields[form.focus].id, FieldId::TokenUrl);
    assert!(
        form.error
            .as_deref()
            .unwrap_or_default()
            .contains("https://")
    );
    let card = form.card(&theme);
    assert!(card.title.contains("more (2/2"), "{}", card.title);
    form.set(FieldId::TokenUrl, "");
    form.set(FieldId::ClientId, "");
    form.on_key(Some(Action::Submit), None, &[]);
    assert_eq!(form.fields[form.focus].id, FieldId::ClientId);
    assert!(form.card(&theme).title.contains("the app (1/2"));
}

#[test]
fn the_second_page_sets_what_add_sets() {
    let mut form = filled("plain");
    form.on_key(Some(Action::PageDown), None, &[]);
    assert_eq!(form.fields[form.focus].id, FieldId::AuthorizeUrl);
    type_text(&mut form, "https://auth.example.com/o/authorize");
    form.set(FieldId::TokenUrl, "https://auth.example.com/o/token");
    form.set(FieldId::RefreshWindow, "30d");
    form.set(FieldId::EnvVar, "PAYROLL_TOKEN");
    form.set(FieldId::Group, "payroll");
    form.set(FieldId::Notes, "owned by payroll");
    let Some(p) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
        panic!("not submitted: {:?}", form.error);
    };
    assert_eq!(p.provider, Provider::Custom);
    assert!(p.endpoints.explicit);
    assert_eq!(p.endpoints.base_url, "https://auth.example.com");
    assert_eq!(
        p.endpoints.token_url.as_deref(),
        Some("https://auth.example.com/o/token")
    );
    assert_eq!(
        p.endpoints.authorize_url.as_deref(),
        Some("https://auth.example.com/o/authorize")
    );
    assert_eq!(
        p.refresh_window,
        std::time::Duration::from_secs(30 * 86_400)
    );
    assert_eq!(p.env_var.as_deref(), Some("PAYROLL_TOKEN"));
    assert_eq!(p.group.as_deref(), Some("payroll"));
    assert_eq!(p.notes, "owned by payroll");
    // Edited again, every value is where it was.
    let edit = Form::edit(&p);
    for (id, value) in [
        (FieldId::TokenUrl, "https://auth.example.com/o/token"),
        (FieldId::RefreshWindow, "30d"),
        (FieldId::EnvVar, "PAYROLL_TOKEN"),
        (FieldId::Group, "payroll"),
        (FieldId::Notes, "owned by payroll"),
    ] {
        assert_eq!(edit.value(id), value, "{id:?}");
    }
    // Each value is checked as `add` checks it.
    for (id, bad) in [
        (FieldId::RefreshWindow, "400d"),
        (FieldId::EnvVar, "LD_PRELOAD"),
        (FieldId::Group, "Pay Roll"),
        (FieldId::AuthorizeUrl, "ftp://x"),
    ] {
        let mut form = filled("bad");
        form.set(FieldId::TokenUrl, "https://auth.example.com/o/token");
        form.set(id, bad);
        assert!(submitted(form.on_key(Some(Action::Submit), None, &[])).is_none());
        assert_eq!(form.fields[form.focus].id, id, "{:?}", form.error);
    }
}

#[test]
fn a_public_client_shows_no_secret_and_takes_none() {
    let theme = crate::tui::theme::Theme::monochrome();
    let mut form = filled("public");
    form.set(FieldId::Secret, "");
    form.set(FieldId::Auth, "none");
    typed_into(&mut form, FieldId::Secret, "typed");
    assert_eq!(form.value(FieldId::Secret), "");
    let text: String = form
        .card(&theme)
        .lines
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect();
    assert!(text.contains("(none: a public client)"), "{text}");
    assert!(!text.contains('•'), "{text}");
    let Some(p) = submitted(form.on_key(Some(Action::Submit), None, &[])) else {
        panic!("not submitted: {:?}", form.error);
    };
    assert_eq!(p.auth_method, AuthMethod::None);
}
