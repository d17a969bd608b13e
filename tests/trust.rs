//! A vault planted by someone who may write the store but holds no key of it: the git remote
//! of a file vault, or the KV path of a team vault in a real OpenBao. age gives no
//! authenticity, so the planter encrypts to a member's public key and to their own, with the
//! profile names the member uses and the planter's own token endpoint. Nothing of such a
//! vault is used: no token is sent to its endpoints, nothing is saved into it, and a person
//! accepts it or not with `recipients accept`. New recipients a member added wait for the
//! same.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::openbao::OpenBao;
use common::running::Agent;
use common::{Env, MockServer, age_encrypt, assert_one_line_error, keygen, stderr, stdout, tool};

/// The public key of the identity file `file`.
fn public_key(file: &Path) -> String {
    let out = tool("age-keygen").arg("-y").arg(file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// What a planter writes: the member's vault as they could guess it (same names, their own
/// token endpoint, themselves among the recipients), without the members' secret they
/// cannot know.
fn planted_text(real: &str, server: &MockServer, theirs: &MockServer, planter: &str) -> String {
    real.lines()
        .filter(|line| !line.starts_with("members_secret"))
        .map(|line| {
            let line = line.replace(&server.base_url(), &theirs.base_url());
            if line.starts_with("recipients = [") {
                line.replace("recipients = [", &format!("recipients = [\"{planter}\", "))
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ciphertext` decrypted by the age CLI with `identity`, if it can.
fn age_decrypt(ciphertext: &[u8], identity: &Path) -> Option<String> {
    let mut child = tool("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(ciphertext).unwrap();
    let out = child.wait_with_output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

#[test]
fn a_file_vault_planted_by_a_non_member_is_refused_until_a_person_accepts_it() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let theirs = MockServer::start();
    let (_planter_key, planter) = keygen(env.home(), "planter.txt");
    let member = public_key(&env.identity());
    let real = env.vault_text();
    assert!(real.contains("members_secret = "), "{real}");
    let planted = age_encrypt(
        &planted_text(&real, &server, &theirs, &planter),
        &[&member, &planter],
        false,
    );
    std::fs::write(env.vault(), &planted).unwrap();

    for args in [
        &["refresh", "p"][..],
        &["token", "p"],
        &["status"],
        &["edit", "p", "--notes", "x"],
    ] {
        let out = env.run(args);
        assert_one_line_error(&out, "was not written by a member");
        assert!(
            stderr(&out).contains("tokdeck recipients accept"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(theirs.token_requests(), 0, "a token went to the planter");
    assert_eq!(
        env.vault_bytes(),
        planted,
        "tokdeck wrote into the planted vault"
    );

    // Without a terminal nobody agreed: still refused.
    let out = env.run(&["recipients", "accept"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains(&format!("+ {planter}")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("members' secret"), "{}", stdout(&out));
    assert!(!env.run(&["token", "p"]).status.success());
    // A person who knows why accepts it.
    let out = env.run(&["recipients", "accept", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_team_vault_planted_in_openbao_gets_no_token_from_a_running_agent() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let env = Env::team(&bao, "team/planted");
    env.authorized_profile("p", &server, &[]);
    let access = stdout(&env.run(&["token", "p"])).trim().to_string();
    env.write_config("agent_interval = \"1s\"\n");
    let agent = Agent::start(&env, &[]);
    let theirs = MockServer::start();
    let (planter_key, planter) = keygen(env.home(), "planter.txt");
    let member = public_key(&env.identity());
    let planted_plain = planted_text(&env.vault_text(), &server, &theirs, &planter);
    let planted = age_encrypt(&planted_plain, &[&member, &planter], true);
    // The planter may write the KV path: a plain `bao kv put`.
    bao.put_vault("team/planted", &planted);
    let planted_version = bao.read("team/planted")["metadata"]["version"].clone();

    // The agent hands out the access token it holds, with a warning, and refreshes nothing.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), access);
    assert!(
        stderr(&out).contains("not written by a member"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["refresh", "p"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not written by a member"),
        "{}",
        stderr(&out)
    );
    assert_eq!(theirs.token_requests(), 0, "a token went to the planter");
    // Nothing was saved for the planter to read.
    let stored = bao.read("team/planted");
    assert_eq!(stored["metadata"]["version"], planted_version);
    let armored = stored["data"]["age"].as_str().unwrap();
    let theirs_to_read = age_decrypt(armored.as_bytes(), &planter_key).unwrap();
    assert_eq!(theirs_to_read, planted_plain);
    // The agent says so where systemd's journal shows it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !agent.said().contains("not written by a member") {
        assert!(std::time::Instant::now() < deadline, "{}", agent.said());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_recipient_another_member_added_waits_for_each_machine_to_accept_it() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let admin = Env::team(&bao, "team/grown");
    admin.authorized_profile("p", &server, &[]);
    let second = Env::second_machine(&bao, "team/grown", &admin);
    assert!(second.run(&["token", "p"]).status.success());
    // The admin adds a third key; the second machine has not seen it yet.
    let (_third_key, third) = keygen(admin.home(), "third.txt");
    let out = admin.run(&["recipients", "add", &third]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(admin.run(&["token", "p"]).status.success());
    let out = second.run(&["refresh", "p"]);
    assert_one_line_error(&out, "never accepted");
    assert!(stderr(&out).contains(&third), "{}", stderr(&out));
    let out = second.run(&["recipients", "accept", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("+ {third}")),
        "{}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains("members' secret"),
        "{}",
        stdout(&out)
    );
    let out = second.run(&["refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A removal draws a new secret, which machines that trusted the old one follow.
    let out = admin.run(&["recipients", "remove", &third]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = second.run(&["refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = second.run(&["recipients", "accept"]);
    assert!(
        stderr(&out).contains("nothing to accept"),
        "{}",
        stderr(&out)
    );
}
