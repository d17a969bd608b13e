//! The vault content's serde form.

use super::*;

fn sample() -> VaultData {
    let mut p = Profile::new(
        "acme".into(),
        Provider::Factorial,
        Endpoints::at("https://api.factorialhr.com"),
        "cid".into(),
        SecretString::from("client-secret-value"),
        "urn:ietf:wg:oauth:2.0:oob".into(),
    );
    p.scopes = vec!["read".into(), "write".into()];
    p.token = Some(Token {
        access_token: SecretString::from("access-value"),
        refresh_token: Some(SecretString::from("refresh-value")),
        token_type: "Bearer".into(),
        scope: Some("read write".into()),
        obtained_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        expires_at: DateTime::from_timestamp(1_700_007_200, 0),
        refresh_expires_at: DateTime::from_timestamp(1_700_604_800, 0),
        id_token: None,
    });
    VaultData {
        profiles: vec![p],
        ..VaultData::default()
    }
}

#[test]
fn toml_round_trip_keeps_every_field() {
    let data = sample();
    let text = toml::to_string(&data).unwrap();
    let back: VaultData = toml::from_str(&text).unwrap();
    assert_eq!(toml::to_string(&back).unwrap(), text);
    let token = back.profiles[0].token.as_ref().unwrap();
    assert_eq!(token.access_token.expose_secret(), "access-value");
    assert_eq!(back.profiles[0].refresh_window, DEFAULT_REFRESH_WINDOW);
    assert!(text.contains("refresh_window = \"7d\""), "{text}");
}

#[test]
fn debug_never_shows_secrets() {
    let debug = format!("{:?}", sample());
    for secret in ["client-secret-value", "access-value", "refresh-value"] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
}

#[test]
fn environment_names_presets_and_custom_hosts() {
    let mut p = sample().profiles.remove(0);
    assert_eq!(p.environment(), "production");
    p.provider = Provider::Custom;
    p.endpoints.base_url = "http://127.0.0.1:8080".into();
    assert_eq!(p.environment(), "127.0.0.1:8080");
}

#[test]
fn control_characters_in_shared_fields_are_found() {
    let mut data = sample();
    assert!(data.fields_with_control_characters().is_empty());
    data.profiles[0].notes = "line one\nline two".into();
    assert!(data.fields_with_control_characters().is_empty());
    data.profiles[0].notes = "\x1b]52;c;eA==\x07".into();
    data.profiles[0].client_id = "c\x1b[2J".into();
    assert_eq!(
        data.fields_with_control_characters(),
        [
            ("acme".to_string(), "client_id"),
            ("acme".to_string(), "notes")
        ]
    );
}

#[test]
fn company_token_without_expiry_parses() {
    let text = r#"
version = 1
[[profile]]
name = "co"
provider = "factorial-demo"
client_id = "c"
client_secret = "s"
redirect_uri = "urn:ietf:wg:oauth:2.0:oob"
owner = "company"
[profile.endpoints]
base_url = "https://api.eu2.demo.factorial.dev"
[profile.token]
access_token = "a"
obtained_at = "2026-01-01T00:00:00Z"
"#;
    let data: VaultData = toml::from_str(text).unwrap();
    let token = data.profiles[0].token.as_ref().unwrap();
    assert!(token.expires_at.is_none());
    assert!(token.refresh_token.is_none());
    assert_eq!(data.profiles[0].owner, OwnerType::Company);
}
