//! The vault and profile commands, run through the built binary on temp dirs.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::os::unix::fs::PermissionsExt;

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
    assert!(text.starts_with("version = 2"), "{text}");
    assert!(text.contains("members_secret = \""), "{text}");
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
    let keygen = common::tool("age-keygen")
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
    let enc = common::tool("age")
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
    let dec = common::tool("age")
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
fn hand_edits_load_back_for_one_profile_and_for_all() {
    let server = MockServer::start();
    let env = Env::new();
    env.authorized_profile("a", &server, &[]);
    env.authorized_profile("b", &server, &[]);
    let access_a = env.stored("a", "access_token");
    let access_b = env.stored("b", "access_token");
    // A person's edit: a comment, a note whose lines look like a profile, CRLF line ends.
    let edited = env
        .vault_text()
        .replace(
            "[[profile]]\nname = \"b\"\n",
            "# the second one\n[[profile]]\nname = \"b\"\nnotes = '''\n[[profile]]\nname = \"a\"\n'''\n",
        )
        .replace('\n', "\r\n");
    assert!(edited.contains("notes = '''"), "{edited}");
    env.write_vault_text(&edited);
    assert_eq!(stdout(&env.run(&["token", "a"])), access_a);
    assert_eq!(stdout(&env.run(&["token", "b"])), access_b);
    let out = env.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);

    // A mistake in b: `token a` reads only a and still works; whatever reads b or every
    // profile names the line to fix, and nothing is written.
    let broken = edited.replace("name = \"b\"\r\n", "name = \"b\"\r\nexpires = 5\r\n");
    env.write_vault_text(&broken);
    let line = broken.lines().position(|l| l == "expires = 5").unwrap() + 1;
    let before = env.vault_bytes();
    assert_eq!(stdout(&env.run(&["token", "a"])), access_a);
    for args in [&["token", "b"][..], &["status"]] {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let message = stderr(&out);
        assert!(
            message.contains(&format!("line {line}")),
            "{args:?}: {message}"
        );
    }
    assert_eq!(env.vault_bytes(), before, "nothing was written");
    // `refresh a` reads and writes only a: b's text stays exactly as the person left it.
    let out = env.run(&["refresh", "a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let b_table =
        |text: &str| text[text.find("[[profile]]\r\nname = \"b\"").unwrap()..].to_string();
    assert_eq!(b_table(&env.vault_text()), b_table(&broken));
    assert_ne!(stdout(&env.run(&["token", "a"])), access_a);
    let out = env.run(&["token", "b"]);
    assert!(stderr(&out).contains("line "), "{}", stderr(&out));
}

#[test]
fn team_vault_opens_with_each_members_key_including_ssh() {
    let env = Env::empty();
    let alice = env.home().join("alice.txt");
    assert!(
        common::tool("age-keygen")
            .arg("-o")
            .arg(&alice)
            .output()
            .unwrap()
            .status
            .success()
    );
    let alice_pub = String::from_utf8(
        common::tool("age-keygen")
            .arg("-y")
            .arg(&alice)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bob = env.home().join("bob_ed25519");
    let kg = common::tool("ssh-keygen")
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
    let dec = common::tool("age")
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
    // Hand-made content below carries the vault's own secret: without it, the vault would be
    // refused as one that a non-member wrote, before its content is looked at.
    let secret_line = env
        .vault_text()
        .lines()
        .find(|l| l.starts_with("members_secret"))
        .unwrap()
        .to_string();
    let missing = env.run(&["--vault", "/nonexistent/v.age", "status"]);
    assert_one_line_error(&missing, "tokdeck init");
    assert_eq!(missing.status.code(), Some(3));

    let other = env.home().join("other.txt");
    assert!(
        common::tool("age-keygen")
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
        ("version = 4\n", "upgrade tokdeck"),
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
        let text = text.replacen("version = 1\n", &format!("version = 2\n{secret_line}\n"), 1);
        let plain = env.home().join("plain.toml");
        std::fs::write(&plain, text).unwrap();
        let enc = common::tool("age")
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

/// `tokdeck status | head -1` and friends: the reader is gone before tokdeck writes. Every
/// command ends quietly with its documented exit code, never a panic (exit 101).
#[test]
fn a_closed_stdout_ends_quietly_with_the_documented_exit_code() {
    let env = Env::new();
    let server = MockServer::start();
    for i in 0..30 {
        env.authorized_profile(&format!("p{i:02}"), &server, &[]);
    }
    env.add_profile("never-authorized", &server, &[]);
    let cases: [(&[&str], i32); 8] = [
        (&["status"], 2),
        (&["status", "--json"], 2),
        (&["completions", "bash"], 0),
        (&["completions", "zsh"], 0),
        (&["token", "p01"], 0),
        (&["check", "p02"], 0),
        (&["authorize", "p03", "--no-browser"], 0),
        (&["--help"], 0),
    ];
    for (args, code) in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env
            .command(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    }
}

#[test]
fn a_missing_test_tool_is_named_with_its_install_line() {
    let result = std::panic::catch_unwind(|| common::tool("tokdeck-no-such-tool"));
    let message = result
        .err()
        .and_then(|e| e.downcast::<String>().ok())
        .map(|s| *s)
        .unwrap_or_default();
    assert!(
        message.contains("apt-get install -y tokdeck-no-such-tool"),
        "{message}"
    );
}

/// An age key made by the reference CLI: (private key file, public key).
fn age_key(env: &Env, name: &str) -> (std::path::PathBuf, String) {
    let path = env.home().join(name);
    let made = common::tool("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(made.status.success());
    let public = common::tool("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    (
        path,
        String::from_utf8_lossy(&public.stdout).trim().to_string(),
    )
}

/// Whether the reference age CLI opens the vault with `key`.
fn age_opens(env: &Env, key: &std::path::Path) -> bool {
    common::tool("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(env.vault())
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn recipients_are_listed_added_and_removed_with_re_encryption() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let (carol_key, carol) = age_key(&env, "carol.txt");
    let (dave_key, dave) = age_key(&env, "dave.txt");
    let (_, ssh_pub) = {
        let key = env.home().join("erin_ed25519");
        let made = common::tool("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "erin@laptop", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(made.status.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        (key, public.trim().to_string())
    };

    let listed = stdout(&env.run(&["recipients"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("(your key)"), "{listed}");

    let out = env.run(&["recipients", "add", &carol, &dave, &ssh_pub]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(age_opens(&env, &carol_key) && age_opens(&env, &dave_key));
    assert_eq!(stdout(&env.run(&["recipients", "list"])).lines().count(), 4);
    // Adding again changes nothing (an SSH key matches without its comment too).
    let ssh_no_comment = ssh_pub.rsplit_once(' ').map(|(k, _)| k).unwrap_or(&ssh_pub);
    let out = env.run(&["recipients", "add", &carol, ssh_no_comment]);
    assert!(
        stderr(&out).contains("0 recipients added"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["recipients", "remove", &dave]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("1 client secret and 1 refresh token"),
        "{said}"
    );
    assert!(said.contains("--rotate"), "{said}");
    assert!(
        !age_opens(&env, &dave_key),
        "the removed key still opens the vault"
    );
    assert!(age_opens(&env, &carol_key));
    assert!(age_opens(&env, &env.identity()));
    assert!(
        !common_backup_exists(&env),
        "the backup readable by the removed key is gone"
    );

    // Your own key and the last one are refused; nothing changes on disk.
    let mine = stdout(&env.run(&["recipients"]))
        .lines()
        .find(|l| l.contains("(your key)"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string();
    let before = env.vault_bytes();
    assert_one_line_error(&env.run(&["recipients", "remove", &mine]), "locks you out");
    assert_one_line_error(
        &env.run(&["recipients", "remove", "age1notakey"]),
        "invalid recipient",
    );
    assert_eq!(env.vault_bytes(), before);
    let out = env.run(&["recipients", "remove", &carol, &ssh_pub, &mine, "--force"]);
    assert_one_line_error(&out, "no recipient");
    assert_eq!(env.vault_bytes(), before);
}

fn common_backup_exists(env: &Env) -> bool {
    let mut name = env.vault().into_os_string();
    name.push(".bak");
    std::path::PathBuf::from(name).exists()
}

#[test]
fn init_warns_when_your_own_key_is_not_a_recipient() {
    let env = Env::empty();
    let (_, carol) = age_key(&env, "carol.txt");
    let out = env.run(&["init", "--recipient", &carol]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot open this vault yourself"),
        "{}",
        stderr(&out)
    );
    let env = Env::empty();
    let (key, carol) = age_key(&env, "carol.txt");
    let out = env.run(&[
        "--identity",
        &key.display().to_string(),
        "init",
        "--recipient",
        &carol,
    ]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn edit_changes_only_the_given_settings() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let token = stdout(&env.run(&["token", "p"]));
    let out = env.run(&[
        "edit",
        "p",
        "--rename",
        "payroll",
        "--scope",
        "employees time_tracking",
        "--owner",
        "company",
        "--pkce",
        "--auto-refresh",
        "--refresh-window",
        "2d",
        "--notes",
        "for HR",
        "--group",
        "payroll",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = env.vault_text();
    for expected in [
        "name = \"payroll\"",
        "\"employees\"",
        "owner = \"company\"",
        "pkce = true",
        "auto_refresh = true",
        "refresh_window = \"2d\"",
        "notes = \"for HR\"",
        "group = \"payroll\"",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    assert_eq!(
        stdout(&env.run(&["token", "payroll"])),
        token,
        "tokens kept"
    );
    let out = env.run_with_stdin(
        &["edit", "payroll", "--new-client-secret"],
        "rotated-secret",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.vault_text().contains("rotated-secret"));
    env.add_profile("other", &server, &[]);
    let before = env.vault_bytes();
    assert_one_line_error(
        &env.run(&["edit", "other", "--rename", "payroll"]),
        "already exists",
    );
    assert_one_line_error(
        &env.run(&["edit", "nope", "--notes", "x"]),
        "no profile named 'nope'",
    );
    assert_one_line_error(
        &env.run(&["edit", "other", "--group", "Pay Roll"]),
        "invalid group 'Pay Roll'",
    );
    assert_eq!(env.vault_bytes(), before);
    let out = env.run(&["status", "--filter", "group:payroll", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"group\": \"payroll\""));
    assert!(!stdout(&out).contains("\"other\""), "{}", stdout(&out));
    let out = env.run(&["edit", "payroll", "--group", ""]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.vault_text().contains("group ="));
}

#[test]
fn wrong_or_dead_end_messages_say_what_is_wrong() {
    let env = Env::new();
    let server = MockServer::start();
    let base = server.base_url();
    // --provider custom and --base-url go together.
    let out = env.run_with_stdin(
        &[
            "add",
            "c",
            "--provider",
            "custom",
            "--base-url",
            &base,
            "--client-id",
            "x",
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "s",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run_with_stdin(
        &[
            "add",
            "d",
            "--provider",
            "custom",
            "--client-id",
            "x",
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "s",
    );
    assert_one_line_error(&out, "add --base-url URL");
    // A path hidden behind a file is not "no vault": it says it cannot read it.
    let hidden = env.home().join("a-file");
    std::fs::write(&hidden, "x").unwrap();
    let inside = hidden.join("vault.age").display().to_string();
    let out = env.run(&["--vault", &inside, "status"]);
    assert_one_line_error(&out, "cannot read");
    assert!(!stderr(&out).contains("init"), "{}", stderr(&out));
    // A corrupt vault with no backup says there is none.
    let lone = env.home().join("lone.age");
    std::fs::write(&lone, b"age-encryption.org/v1\n-> X25519 garbage\n").unwrap();
    let out = env.run(&["--vault", &lone.display().to_string(), "status"]);
    assert_one_line_error(&out, "tokdeck kept no backup");
}

#[test]
fn unchecked_input_is_refused_with_a_clear_message() {
    let env = Env::new();
    let server = MockServer::start();
    let base = server.base_url();
    let before = env.vault_bytes();
    let add = |extra: &[&str], secret: &str| {
        let mut args = vec![
            "add",
            "p",
            "--client-id",
            "x",
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ];
        args.extend_from_slice(extra);
        env.run_with_stdin(&args, secret)
    };
    let with_query = format!("{base}/?tenant=1#x");
    assert_one_line_error(
        &add(&["--base-url", &with_query], "s"),
        "no '?query' or '#fragment'",
    );
    let with_user = base.replace("http://", "http://user:pw@");
    assert_one_line_error(
        &add(&["--base-url", &with_user], "s"),
        "user name or password",
    );
    for window in ["0s", "9999d"] {
        let out = add(&["--base-url", &base, "--refresh-window", window], "s");
        assert!(!out.status.success());
        assert!(stderr(&out).contains("out of range"), "{}", stderr(&out));
    }
    let huge = "x".repeat(70 * 1024);
    assert_one_line_error(&add(&["--base-url", &base], &huge), "longer than 64 KiB");
    assert_eq!(env.vault_bytes(), before);

    // A pasted redirect without state while an authorization with state is pending.
    env.add_profile("q", &server, &[]);
    assert!(
        env.run(&["authorize", "q", "--no-browser"])
            .status
            .success()
    );
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    let out = env.run(&[
        "exchange",
        "q",
        &format!("http://127.0.0.1:9/cb?code={code}"),
    ]);
    assert_one_line_error(&out, "carries no state");
}

#[test]
fn a_passphrase_protected_ssh_key_without_a_terminal_is_named() {
    let env = Env::empty();
    let key = env.home().join("locked_ed25519");
    let made = common::tool("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let vault = env.home().join("v.age").display().to_string();
    assert!(
        env.run(&["--vault", &vault, "init", "--recipient", public.trim()])
            .status
            .success()
    );
    // setsid: no controlling terminal, as under cron or systemd.
    let out = common::tool("setsid")
        .arg("-w")
        .arg(common::bin())
        .args([
            "--vault",
            &vault,
            "--identity",
            &key.display().to_string(),
            "status",
        ])
        .env("HOME", env.home())
        .env("XDG_CONFIG_HOME", env.home().join("config"))
        .env("XDG_STATE_HOME", env.home().join("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_one_line_error(&out, "passphrase-protected and there is no terminal");
}

#[test]
fn a_vault_with_a_syntax_error_names_the_line_and_key_never_the_secret() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let text = env.vault_text();
    let secret = env.stored("p", "client_secret");
    assert!(!secret.is_empty());
    // An unterminated string on the secret's line: the parser would quote the line.
    let broken = text.replacen(
        &format!("client_secret = \"{secret}\""),
        &format!("client_secret = \"{secret}"),
        1,
    );
    env.write_vault_text(&broken);
    for args in [
        &["status"][..],
        &["token", "p"],
        &["exec", "p", "--", "true"],
        &["api", "p", "/x"],
        &["agent"],
    ] {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert!(!err.contains(&secret), "{args:?} printed the secret: {err}");
        assert!(
            err.contains("client_secret") && err.contains("line "),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn names_that_differ_only_in_case_are_refused() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("acme", &server, &[]);
    let out = env.run_with_stdin(
        &[
            "add",
            "ACME",
            "--client-id",
            "x",
            "--base-url",
            &server.base_url(),
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "secret",
    );
    assert_one_line_error(&out, "a profile named 'acme' already exists");
    env.add_profile("other", &server, &[]);
    let out = env.run(&["edit", "other", "--rename", "Acme"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("'acme' already exists"),
        "{}",
        stderr(&out)
    );
    // A profile may change the case of its own name.
    let out = env.run(&["edit", "acme", "--rename", "Acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn edit_with_nothing_to_change_says_so() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let before = env.vault_bytes();
    let out = env.run(&["edit", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to change"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("updated"), "{}", stderr(&out));
    assert_eq!(
        env.vault_bytes(),
        before,
        "an edit of nothing wrote the vault"
    );
    let out = env.run(&["edit", "p", "--scope", "read"]);
    assert!(
        stderr(&out).contains("updated profile 'p'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_manual_page_renders_without_warnings() {
    let env = Env::empty();
    let out = env.run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.contains(".TH tokdeck"),
        "{page}"
    );
    for word in ["exchange", "refresh", "agent", "\\-\\-vault"] {
        assert!(page.contains(word), "the page does not name {word}");
    }
    let mut groff = common::tool("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    groff.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let rendered = groff.wait_with_output().unwrap();
    assert!(rendered.status.success());
    assert_eq!(
        String::from_utf8_lossy(&rendered.stderr),
        "",
        "groff warned"
    );
}

#[test]
fn a_vault_named_like_a_url_is_refused_by_its_scheme_and_nothing_is_created() {
    let env = Env::empty();
    let bao = "openbao+http://127.0.0.1:8200/secret/team";
    for (args, says) in [
        (&["--vault", bao, "init"][..], "no OpenBao token"),
        (&["--vault", bao, "status"], "no OpenBao token"),
        (
            &["--vault", "s3://bucket/vault.age", "token", "p"],
            "'s3://' is not a kind of vault location tokdeck knows",
        ),
    ] {
        let out = env.command(args).current_dir(env.home()).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert_one_line_error(&out, says);
    }
    let made: Vec<_> = std::fs::read_dir(env.home())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(':'))
        .collect();
    assert!(made.is_empty(), "created {made:?}");
}

#[test]
fn export_shares_the_apps_and_import_keeps_tokens_personal() {
    let alice = Env::new();
    let server = MockServer::start();
    alice.authorized_profile("payroll", &server, &["--scope", "read"]);
    alice.add_profile("reports", &server, &[]);
    let out = alice.run(&["export"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let apps = stdout(&out);
    assert!(apps.contains("name = \"payroll\"") && apps.contains("name = \"reports\""));
    for private in ["access_token", "refresh_token", common::CLIENT_SECRET] {
        assert!(
            !apps.contains(private),
            "the export holds {private}:\n{apps}"
        );
    }
    let one = stdout(&alice.run(&["export", "reports"]));
    assert!(!one.contains("payroll"), "{one}");

    let bob = Env::new();
    let file = bob.home().join("apps.toml");
    std::fs::write(&file, &apps).unwrap();
    let file = file.to_str().unwrap();
    let out = bob.run(&["import", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("payroll: imported"),
        "{}",
        stderr(&out)
    );
    let status = stdout(&bob.run(&["status"]));
    assert!(
        status.contains("payroll") && status.contains("no-token"),
        "{status}"
    );
    // Again: every clash named, nothing written; --replace takes the settings, keeps tokens.
    let before = bob.vault_bytes();
    let out = bob.run(&["import", file]);
    assert_one_line_error(&out, "these profiles exist already: payroll, reports");
    assert_eq!(bob.vault_bytes(), before);
    let out = bob.run(&["import", file, "--replace"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // With secrets: encrypted to Bob, who imports it with his key.
    let bob_key = std::fs::read_to_string(bob.identity()).unwrap();
    let bob_recipient = bob_key
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let out = alice.run(&["export", "--with-secrets"]);
    assert_one_line_error(&out, "--recipient");
    let out = alice.run(&[
        "export",
        "payroll",
        "--with-secrets",
        "--recipient",
        &bob_recipient,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(common::CLIENT_SECRET));
    let sealed = bob.home().join("apps.age");
    std::fs::write(&sealed, &out.stdout).unwrap();
    assert_eq!(bob.stored("payroll", "client_secret"), "");
    let out = bob.run(&["import", sealed.to_str().unwrap(), "--replace"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        bob.stored("payroll", "client_secret"),
        common::CLIENT_SECRET
    );
    // Someone else's key cannot read it.
    let carol = Env::new();
    let out = carol.run(&["import", sealed.to_str().unwrap()]);
    assert!(!out.status.success());
}

/// A shared file with one profile named `name`, with `extra` lines.
fn shared_profile(name: &str, extra: &str) -> String {
    format!(
        "version = 1\n[[profile]]\nname = \"{name}\"\nprovider = \"factorial\"\nendpoints = {{ base_url = \"https://api.factorialhr.com\" }}\nclient_id = \"c\"\nclient_secret = \"\"\nredirect_uri = \"urn:ietf:wg:oauth:2.0:oob\"\nowner = \"user\"\n{extra}"
    )
}

#[test]
fn import_refuses_what_export_does_not_make_and_reads_older_files() {
    let env = Env::new();
    let before = env.vault_bytes();
    let bad = env.home().join("bad.toml");
    for (text, why) in [
        (
            "this is not toml = = =",
            "is not a file `tokdeck export` makes",
        ),
        (
            "version = 1\n[[profile]]\nname = \"x\"\nprovider = \"factorial\"\nendpoints = { base_url = \"https://api.factorialhr.com\" }\nclient_id = \"c\"\nclient_secret = \"\"\nredirect_uri = \"urn:ietf:wg:oauth:2.0:oob\"\nowner = \"user\"\ncolour = \"blue\"\n",
            "line 10, key `colour`",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = env.run(&["import", bad.to_str().unwrap()]);
        assert_one_line_error(&out, why);
    }
    // What `add` refuses, `import` refuses too: a variable that makes programs load a
    // library, a secret sent in clear text off the machine, a name that is a path.
    for (text, why) in [
        (
            shared_profile("x", "env_var = \"LD_PRELOAD\"\n"),
            "tokdeck never puts a token in LD_PRELOAD",
        ),
        (
            shared_profile("x", "").replace("https://api.factorialhr.com", "http://evil.example"),
            "refusing http://",
        ),
        (
            shared_profile("../team", ""),
            "invalid profile name '../team'",
        ),
        (shared_profile("a\\u001b[2J", ""), "invalid profile name"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = env.run(&["import", bad.to_str().unwrap()]);
        assert_one_line_error(&out, why);
        assert!(!stderr(&out).contains('\u{1b}'), "{}", stderr(&out));
    }
    assert_eq!(
        env.vault_bytes(),
        before,
        "a refused import wrote the vault"
    );
    // A file from before client authentication was a setting: no auth_method.
    let old = env.home().join("old.toml");
    std::fs::write(
        &old,
        "version = 1\n[[profile]]\nname = \"legacy\"\nprovider = \"factorial\"\nendpoints = { base_url = \"https://api.factorialhr.com\" }\nclient_id = \"c\"\nclient_secret = \"\"\nredirect_uri = \"urn:ietf:wg:oauth:2.0:oob\"\nowner = \"user\"\n",
    )
    .unwrap();
    let out = env.run(&["import", old.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&env.run(&["status"])).contains("legacy"));
}

#[test]
fn init_with_the_own_key_as_recipient_lists_it_once() {
    let env = Env::empty();
    let key = env.home().join("key.txt");
    let made = common::tool("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let public = String::from_utf8(made.stderr).unwrap();
    let public = public.trim().trim_start_matches("Public key: ");
    let vault = env.home().join("v.age").display().to_string();
    let identity = key.display().to_string();
    let args = ["--vault", &vault, "--identity", &identity];
    let mut init = args.to_vec();
    let spaced = format!("  {public} ");
    init.extend(["init", "--recipient", &spaced]);
    let out = env.run(&init);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("for 1 recipient"), "{}", stderr(&out));
    let mut list = args.to_vec();
    list.extend(["recipients", "list"]);
    assert_eq!(stdout(&env.run(&list)).lines().count(), 1);
}

#[test]
fn import_replace_never_takes_secrets_to_other_servers() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let before = env.vault_bytes();
    let out = env.run(&["export", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exported = stdout(&out);
    let file = env.home().join("apps.toml");
    // The same servers: the token and the client secret stay.
    std::fs::write(&file, &exported).unwrap();
    let out = env.run(&["import", file.to_str().unwrap(), "--replace"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("its token stays"), "{}", stderr(&out));
    let token = env.stored("p", "refresh_token");
    assert!(!token.is_empty());
    // Another server: refused without --new-origin, naming both.
    let other = MockServer::start();
    std::fs::write(
        &file,
        exported.replace(&server.base_url(), &other.base_url()),
    )
    .unwrap();
    let kept = env.vault_bytes();
    let out = env.run(&["import", file.to_str().unwrap(), "--replace"]);
    assert_one_line_error(&out, "moves profiles to other servers");
    assert!(stderr(&out).contains(&other.base_url()), "{}", stderr(&out));
    assert_eq!(env.vault_bytes(), kept);
    assert_ne!(kept, before);
    // With it, the profile moves and neither its token nor its secret goes along.
    let out = env.run(&[
        "import",
        file.to_str().unwrap(),
        "--replace",
        "--new-origin",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("were dropped"), "{}", stderr(&out));
    assert_eq!(env.stored("p", "refresh_token"), "");
    assert_eq!(env.stored("p", "client_secret"), "");
    let out = env.run(&["refresh", "p"]);
    assert!(!out.status.success());
    assert_eq!(other.token_requests(), 0, "a secret went to the new server");
}

#[test]
fn a_hand_edit_that_breaks_a_rule_is_refused_where_the_value_is_used() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let real = env.vault_text();
    // A variable that makes programs load a library, put in by hand.
    env.write_vault_text(&real.replace(
        "[[profile]]\nname = \"p\"\n",
        "[[profile]]\nname = \"p\"\nenv_var = \"LD_PRELOAD\"\n",
    ));
    assert!(env.vault_text().contains("LD_PRELOAD"));
    let out = env.run(&["exec", "p", "--no-agent", "--", "true"]);
    assert_one_line_error(&out, "breaks a rule");
    assert!(stderr(&out).contains("LD_PRELOAD"), "{}", stderr(&out));
    // A token endpoint in clear text on another host: no secret goes there.
    let plain = real.replace(&server.base_url(), "http://tokens.example.com");
    env.write_vault_text(&plain);
    let calls = server.token_requests();
    for args in [&["refresh", "p"][..], &["token", "p", "--no-agent"]] {
        let out = env.run(args);
        assert_one_line_error(&out, "breaks a rule");
        assert!(
            stderr(&out).contains("refusing http://"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(server.token_requests(), calls);
    // The listing still shows it, so it can be fixed.
    assert!(stdout(&env.run(&["status"])).contains('p'));
}

#[test]
fn a_mistyped_name_gets_the_closest_profile_suggested() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("loop", &server, &[]);
    for args in [
        &["token", "lop", "--no-agent"][..],
        &["refresh", "lop"],
        &["edit", "lop", "--notes", "x"],
        &["export", "LOOP"],
        &["remove", "lopo"],
    ] {
        let out = env.run(args);
        assert_one_line_error(&out, "did you mean 'loop'?");
    }
    let out = env.run(&["token", "payroll", "--no-agent"]);
    assert_one_line_error(&out, "no profile named 'payroll': see `tokdeck status`");
}
