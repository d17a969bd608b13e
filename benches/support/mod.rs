//! Fixtures shared by the benchmarks: vaults of many profiles.

#![allow(dead_code)]

pub mod meter;

use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use chrono::{DateTime, Utc};
use tokdeck::vault::{
    Endpoints, IdentityFile, Profile, Provider, Sealing, Store, Token, Unlock, VaultData,
};

/// How old profile `i`'s token is: spread over 10,000 s, so some have expired (lifetime 2 h).
pub fn token_age_secs(i: usize) -> i64 {
    (i as i64 * 97) % 10_000
}

/// The name of profile `i` in a benchmark vault.
pub fn profile_name(i: usize) -> String {
    format!("profile-{i:05}")
}

/// A fixed instant for benchmarks that need stable countdowns.
pub fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
}

/// `n` profiles at `base_url`, with tokens in a spread of states around `now`; refresh
/// tokens from `refresh`.
pub fn profiles(
    n: usize,
    base_url: &str,
    now: DateTime<Utc>,
    mut refresh: impl FnMut(usize) -> String,
) -> Vec<Profile> {
    let at = |secs: i64| now + chrono::Duration::seconds(secs);
    (0..n)
        .map(|i| {
            let mut p = Profile::new(
                profile_name(i),
                Provider::Custom,
                Endpoints::at(base_url),
                "test-client".into(),
                SecretString::from("test-secret-5f1c".to_string()),
                "urn:ietf:wg:oauth:2.0:oob".into(),
            );
            p.scopes = vec!["read".into(), "write".into()];
            let age = token_age_secs(i);
            p.token = Some(Token {
                access_token: SecretString::from(format!("access-{i:05}-{}", "x".repeat(40))),
                refresh_token: Some(SecretString::from(refresh(i))),
                token_type: "Bearer".into(),
                scope: Some("read write".into()),
                obtained_at: at(-age),
                expires_at: Some(at(7_200 - age)),
                refresh_expires_at: Some(at(604_800 - age)),
                id_token: None,
            });
            p
        })
        .collect()
}

/// A vault of `n` profiles in `dir`; returns (vault path, identity path).
pub fn vault(
    dir: &Path,
    n: usize,
    base_url: &str,
    now: DateTime<Utc>,
    refresh: impl FnMut(usize) -> String,
) -> (PathBuf, PathBuf) {
    write_vault(dir, profiles(n, base_url, now, refresh))
}

/// Like [`vault`], for an OAuth app with its own client id and secret (a real server's).
pub fn vault_for_client(
    dir: &Path,
    n: usize,
    base_url: &str,
    (client_id, client_secret): (&str, &str),
    refresh: impl FnMut(usize) -> String,
) -> (PathBuf, PathBuf) {
    let mut profiles = profiles(n, base_url, Utc::now(), refresh);
    for p in &mut profiles {
        p.client_id = client_id.to_string();
        p.client_secret = SecretString::from(client_secret.to_string());
    }
    write_vault(dir, profiles)
}

/// A vault of `n` auto-refresh profiles at `base_url` whose tokens live `life` seconds, obtained
/// at moments spread over the last `life` seconds; returns (vault path, identity path).
pub fn keepalive_vault(
    dir: &Path,
    n: usize,
    base_url: &str,
    life: i64,
    refresh: impl FnMut(usize) -> String,
) -> (PathBuf, PathBuf) {
    let now = Utc::now();
    let mut profiles = profiles(n, base_url, now, refresh);
    for (i, p) in profiles.iter_mut().enumerate() {
        p.auto_refresh = true;
        if let Some(token) = &mut p.token {
            let obtained = now - chrono::Duration::seconds(i as i64 % life);
            token.obtained_at = obtained;
            token.expires_at = Some(obtained + chrono::Duration::seconds(life));
        }
    }
    write_vault(dir, profiles)
}

/// A new vault of `profiles` in `dir`, encrypted to a new key there: (vault, key).
fn write_vault(dir: &Path, profiles: Vec<Profile>) -> (PathBuf, PathBuf) {
    let key = dir.join("key.txt");
    let id = IdentityFile::generate(&key).unwrap();
    let path = dir.join("vault.age");
    let data = VaultData {
        profiles,
        ..VaultData::default()
    };
    let recipients = id.recipients.clone();
    Store::create(
        &path,
        data,
        Sealing::Recipients(recipients),
        Unlock::Identity(id),
    )
    .unwrap();
    (path, key)
}

/// Opens a benchmark vault.
pub fn open(path: &Path, key: &Path) -> Store {
    Store::open(
        path,
        Unlock::Identity(IdentityFile::load(key, tokdeck::vault::crypto::NoPrompt).unwrap()),
    )
    .unwrap()
}

/// The built binary: `tokdeck`, which hands what it does not answer itself to
/// [`core_bin`].
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tokdeck"))
}

/// The whole program, `tokdeck-core`.
pub fn core_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tokdeck-core"))
}

/// The binary in a home of its own (`home`): no inherited settings, its config, data and state
/// folders under `home`, and no input or output.
pub fn command(home: &Path, args: &[&str]) -> std::process::Command {
    command_of(&bin(), home, args)
}

/// [`command`] for `program` (`tokdeck-core`, say).
pub fn command_of(program: &Path, home: &Path, args: &[&str]) -> std::process::Command {
    use std::process::Stdio;
    let mut cmd = clean(program);
    cmd.args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_STATE_HOME", home.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// `program` with only `PATH` from this environment. Under `cargo bench` the environment holds
/// `LD_LIBRARY_PATH`, which makes the loader search more folders for every library and would
/// slow whichever program inherited it: what is compared gets the same clean start.
pub fn clean(program: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}
