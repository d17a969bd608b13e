//! The vault and profile commands, run through the built binary on temp dirs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Env, MockServer, assert_one_line_error, stderr, stdout};

#[test]
fn quick_start_lists_an_added_profile() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("acme", &server, &["--scope", "read write"]);
    let out = env.run(&["status"]);
    let table = stdout(&out);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("acme") && table.contains("no-token"),
        "{table}"
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unauthorized profile is broken"
    );
}

#[test]
fn vault_decrypts_with_the_age_cli_and_never_holds_plain_secrets_elsewhere() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("acme", &server, &[]);
    let text = env.vault_text();
    assert!(text.starts_with("version = 1"), "{text}");
    assert!(text.contains("client_secret = \"test-secret-5f1c\""));
    let raw = env.vault_bytes();
    assert!(raw.starts_with(b"age-encryption.org/v1"));
    assert!(!String::from_utf8_lossy(&raw).contains("test-secret"));
    for path in [env.vault(), common_backup(&env)] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    let dir_mode = std::fs::metadata(env.vault().parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
}

fn common_backup(env: &Env) -> std::path::PathBuf {
    let mut p = env.vault().into_os_string();
    p.push(".bak");
    p.into()
}

#[test]
fn a_vault_made_by_the_age_cli_opens_and_is_resealed_to_the_same_key() {
    let env = Env::empty();
    let key = env.home().join("key.txt");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let plain = env.home().join("plain.toml");
    std::fs::write(
        &plain,
        "version = 1\n[[profile]]\nname = \"cli\"\nprovider = \"factorial\"\nclient_id = \"c\"\nclient_secret = \"s\"\nredirect_uri = \"urn:ietf:wg:oauth:2.0:oob\"\nowner = \"user\"\n[profile.endpoints]\nbase_url = \"https://api.factorialhr.com\"\n",
    )
    .unwrap();
    let vault = env.home().join("team.age");
    let enc = Command::new("age")
        .arg("-e")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(&vault)
        .arg(&plain)
        .output()
        .unwrap();
    assert!(enc.status.success(), "{}", stderr(&enc));
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--vault".to_string(),
            vault.display().to_string(),
            "--identity".to_string(),
            key.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out = env.run(
        &args(&["status"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(stdout(&out).contains("cli"), "{}", stderr(&out));
    let out = env.run(
        &args(&["remove", "cli"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dec = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg(&vault)
        .output()
        .unwrap();
    assert!(dec.status.success());
    assert!(!String::from_utf8_lossy(&dec.stdout).contains("[[profile]]"));
}

#[test]
fn team_vault_opens_with_each_members_key_including_ssh() {
    let env = Env::empty();
    let alice = env.home().join("alice.txt");
    assert!(
        Command::new("age-keygen")
            .arg("-o")
            .arg(&alice)
            .output()
            .unwrap()
            .status
            .success()
    );
    let alice_pub = String::from_utf8(
        Command::new("age-keygen")
            .arg("-y")
            .arg(&alice)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bob = env.home().join("bob_ed25519");
    let kg = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&bob)
        .output()
        .unwrap();
    assert!(kg.status.success());
    let bob_pub = std::fs::read_to_string(bob.with_extension("pub")).unwrap();
    let vault = env.home().join("team.age");
    let v = vault.display().to_string();
    let out = env.run(&[
        "--vault",
        &v,
        "init",
        "--recipient",
        alice_pub.trim(),
        "--recipient",
        bob_pub.trim(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 recipients"));
    let server = MockServer::start();
    let base = server.base_url();
    let add = env.run_with_stdin(
        &[
            "--vault",
            &v,
            "--identity",
            &bob.display().to_string(),
            "add",
            "shared",
            "--client-id",
            "c",
            "--base-url",
            &base,
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "s3cret",
    );
    assert!(add.status.success(), "{}", stderr(&add));
    // Alice still opens it after Bob saved: the recipient list travels inside the vault.
    let out = env.run(&[
        "--vault",
        &v,
        "--identity",
        &alice.display().to_string(),
        "status",
    ]);
    assert!(stdout(&out).contains("shared"), "{}", stderr(&out));
    let dec = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&bob)
        .arg(&vault)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&dec.stdout).contains("shared"));
}

#[test]
fn passphrase_vault_works_from_a_file() {
    let env = Env::empty();
    let pass = env.home().join("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let p = pass.display().to_string();
    let out = env.run(&["--passphrase-file", &p, "init", "--passphrase"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["--passphrase-file", &p, "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(&pass, "wrong\n").unwrap();
    let before = env.vault_bytes();
    let out = env.run(&["--passphrase-file", &p, "status"]);
    assert_one_line_error(&out, "wrong passphrase");
    assert_eq!(out.status.code(), Some(3));
    // Without a terminal or a file, it says how to give one.
    let out = env.run(&["status"]);
    assert_one_line_error(&out, "--passphrase-file");
    assert_eq!(env.vault_bytes(), before);
}

#[test]
fn status_json_is_stable_and_exit_codes_follow_state() {
    let env = Env::new();
    let out = env.run(&["status", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
    assert_eq!(out.status.code(), Some(0));
    let server = MockServer::start();
    env.authorized_profile("b-user", &server, &[]);
    env.authorized_profile("a-company", &server, &["--owner", "company"]);
    let out = env.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows[0]["name"], "a-company");
    assert_eq!(rows[0]["state"], "ok");
    assert!(rows[0]["access_expires_at"].is_null());
    assert_eq!(rows[1]["owner"], "user");
    assert!(rows[1]["access_expires_in_secs"].as_i64().unwrap() > 7000);
    assert!(rows[1]["refresh_window_left_secs"].as_i64().unwrap() > 6 * 86_400);
    let mut keys: Vec<_> = rows[1].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    let mut expected = [
        "name",
        "environment",
        "owner",
        "scopes",
        "state",
        "access_expires_at",
        "access_expires_in_secs",
        "refresh_expires_at",
        "refresh_window_left_secs",
        "owner_identity",
        "last_error",
    ];
    expected.sort();
    assert_eq!(keys, expected);
    // The refresh window (7 d) ends within a 8 d warning: attention soon.
    let out = env.run(&["status", "--warn", "8d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("expiring"));
}

#[test]
fn bad_input_gives_one_line_and_leaves_the_vault_alone() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("acme", &server, &[]);
    let before = env.vault_bytes();

    let dup = env.run_with_stdin(
        &[
            "add",
            "acme",
            "--client-id",
            "x",
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "s",
    );
    assert_one_line_error(&dup, "already exists");

    let insecure = env.run_with_stdin(
        &[
            "add",
            "b",
            "--client-id",
            "x",
            "--base-url",
            "http://api.example.com",
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "s",
    );
    assert_one_line_error(&insecure, "use https://");

    let bad_url = env.run_with_stdin(
        &[
            "add",
            "b",
            "--client-id",
            "x",
            "--base-url",
            "not a url",
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "s",
    );
    assert_one_line_error(&bad_url, "invalid URL");

    let bad_redirect = env.run_with_stdin(
        &["add", "b", "--client-id", "x", "--redirect-uri", "callback"],
        "s",
    );
    assert_one_line_error(&bad_redirect, "invalid redirect URI");

    let missing = env.run(&["remove", "ghost"]);
    assert_one_line_error(&missing, "no profile named 'ghost'");

    let bad_duration = env.run(&["status", "--warn", "soon"]);
    assert!(stderr(&bad_duration).contains("1d, 12h, 30m"));
    assert_eq!(bad_duration.status.code(), Some(3));

    assert_eq!(env.vault_bytes(), before);
}

#[test]
fn missing_wrong_key_corrupt_and_future_vaults_are_refused_untouched() {
    let env = Env::new();
    let missing = env.run(&["--vault", "/nonexistent/v.age", "status"]);
    assert_one_line_error(&missing, "tokdeck init");
    assert_eq!(missing.status.code(), Some(3));

    let other = env.home().join("other.txt");
    assert!(
        Command::new("age-keygen")
            .arg("-o")
            .arg(&other)
            .output()
            .unwrap()
            .status
            .success()
    );
    let wrong = env.run(&["--identity", &other.display().to_string(), "status"]);
    assert_one_line_error(&wrong, "no identity matches");

    let good = env.vault_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 20].to_vec(),
            "restore it from",
        ),
        ("empty", Vec::new(), "empty"),
        (
            "garbage",
            b"hello world\n".to_vec(),
            "not a readable age file",
        ),
        (
            "bit flip",
            {
                let mut b = good.clone();
                let i = b.len() - 5;
                b[i] ^= 1;
                b
            },
            "restore it from",
        ),
    ];
    for (what, bytes, needle) in cases {
        std::fs::write(env.vault(), &bytes).unwrap();
        let out = env.run(&["remove", "x"]);
        assert_one_line_error(&out, needle);
        assert_eq!(env.vault_bytes(), bytes, "{what} was rewritten");
    }

    // A newer format, and content with wrong types, both encrypted by the age CLI.
    for (text, needle) in [
        ("version = 2\n", "upgrade tokdeck"),
        ("version = 1\n[[profile]]\nname = 3\n", "content is invalid"),
        (
            "version = 1\n[[profile]]\nname = \"p\"\nprovider = \"zoho\"\n",
            "content is invalid",
        ),
        (
            "version = 1\n[[profile]]\nname = \"p\"\nprovider = \"factorial\"\n",
            "missing field",
        ),
    ] {
        let plain = env.home().join("plain.toml");
        std::fs::write(&plain, text).unwrap();
        let enc = Command::new("age")
            .arg("-e")
            .arg("-i")
            .arg(env.identity())
            .arg("-o")
            .arg(env.vault())
            .arg(&plain)
            .output()
            .unwrap();
        assert!(enc.status.success());
        let bytes = env.vault_bytes();
        let out = env.run(&["remove", "p"]);
        assert_one_line_error(&out, needle);
        assert_eq!(env.vault_bytes(), bytes);
    }
}

#[test]
fn init_refuses_to_overwrite_and_bad_recipients() {
    let env = Env::new();
    let before = env.vault_bytes();
    assert_one_line_error(&env.run(&["init"]), "already exists");
    assert_eq!(env.vault_bytes(), before);
    let out = env.run(&[
        "--vault",
        &env.home().join("b.age").display().to_string(),
        "init",
        "--recipient",
        "age1bogus",
    ]);
    assert_one_line_error(&out, "invalid recipient");
}

#[test]
fn secret_comes_from_a_file_and_never_from_argv() {
    let env = Env::new();
    let server = MockServer::start();
    let secret_file = env.home().join("secret");
    std::fs::write(&secret_file, "file-secret\n").unwrap();
    let base = server.base_url();
    let out = env.run(&[
        "add",
        "f",
        "--client-id",
        "c",
        "--base-url",
        &base,
        "--redirect-uri",
        "urn:ietf:wg:oauth:2.0:oob",
        "--client-secret-file",
        &secret_file.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.vault_text().contains("client_secret = \"file-secret\""));
    let out = env.run(&[
        "add",
        "g",
        "--client-id",
        "c",
        "--client-secret",
        "x",
        "--redirect-uri",
        "urn:ietf:wg:oauth:2.0:oob",
    ]);
    assert!(
        !out.status.success(),
        "a plain --client-secret must not exist"
    );
}

#[test]
fn completions_and_help_print() {
    let env = Env::empty();
    let out = env.run(&["completions", "bash"]);
    assert!(stdout(&out).contains("tokdeck"));
    let out = env.run(&["--help"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("status"));
}

#[test]
fn config_file_sets_the_warn_threshold_and_bad_config_is_named() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("a", &server, &[]);
    env.write_config("warn = \"8d\"\n");
    assert_eq!(env.run(&["status"]).status.code(), Some(1));
    env.write_config("wran = \"8d\"\n");
    let out = env.run(&["status"]);
    assert_one_line_error(&out, "wran");
}

#[test]
fn a_vault_readable_by_others_is_private_again_after_a_save() {
    let env = Env::new();
    // As a git checkout would leave it.
    std::fs::set_permissions(env.vault(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let mode = std::fs::metadata(env.vault()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
