//! A team vault in a real OpenBao server when the line to it fails: a machine cut off during
//! the save of a refresh (through a TCP proxy that cuts every connection), a server that is
//! sealed or out of reach under a running agent, a vault the agent can no longer decrypt, and
//! writes whose answers are lost after they were applied (through a proxy that drops them),
//! and a process paused (SIGSTOP) as it records its refresh, woken after its lease ran out.
//! No refresh token is sent twice, a valid access token is still handed out from memory, and
//! nothing spins.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::time::{Duration, Instant};

use common::cutter::Cutter;
use common::openbao::OpenBao;
use common::running::Agent;
use common::write_faults::WriteFaults;
use common::{Env, MockServer, assert_one_line_error, stderr, stdout};

/// Short timeouts: a lease of 10 s (see `LeaseTiming`).
const CONFIG: &str = "http_timeout = \"2s\"\nagent_interval = \"1s\"\n";

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A team vault at `path` with profile `p` on `server`, and a second machine that reaches
/// OpenBao through `cutter`.
fn team_behind_cutter(bao: &OpenBao, path: &str, server: &MockServer) -> (Env, Env, Cutter) {
    let direct = Env::team(bao, path);
    direct.write_config(CONFIG);
    direct.authorized_profile("p", server, &[]);
    let cutter = Cutter::start(bao.port());
    let location = format!("openbao+http://127.0.0.1:{}/secret/{path}", cutter.port());
    let cut_off = Env::second_machine_at(bao, &location, &direct);
    cut_off.write_config(CONFIG);
    (direct, cut_off, cutter)
}

/// A team vault at `path` with profile `p` on `server`, and a second machine that reaches
/// OpenBao through a proxy that can lose or hold back its writes; it has read the vault.
fn team_behind_write_faults(
    bao: &OpenBao,
    path: &str,
    server: &MockServer,
) -> (Env, Env, WriteFaults) {
    let direct = Env::team(bao, path);
    direct.write_config(CONFIG);
    direct.authorized_profile("p", server, &[]);
    let proxy = WriteFaults::start(bao.port());
    let location = format!("openbao+http://127.0.0.1:{}/secret/{path}", proxy.port());
    let behind = Env::second_machine_at(bao, &location, &direct);
    behind.write_config(CONFIG);
    assert!(behind.run(&["status"]).status.code().is_some_and(|c| c < 3));
    (direct, behind, proxy)
}

#[test]
fn a_machine_cut_off_during_its_save_keeps_others_from_sending_its_spent_token() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let (direct, cut_off, cutter) = team_behind_cutter(&bao, "team/cut", &server);
    let agent = Agent::start(&cut_off, &[]);
    // The answer takes a while: the line is cut after the refresh token left, before the save.
    server.set_latency(Duration::from_millis(1500));
    // The agent refreshes: a process that lives on, holding the answer it could not save.
    let refreshing = std::thread::spawn({
        let socket = cut_off.agent_socket();
        move || common::ask_socket(&socket, r#"{"v":1,"op":"refresh","profile":"p"}"#).unwrap()
    });
    wait_for(
        "the record of the refresh on its way",
        Duration::from_secs(10),
        || {
            bao.read("team/cut.lock")["data"]["spending"]
                .as_str()
                .is_some_and(|text| text.starts_with("[{"))
        },
    );
    cutter.cut();
    let reply = refreshing.join().unwrap();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("keeps them"),
        "{reply}"
    );
    assert_eq!(server.refresh_requests(), 1);
    server.set_latency(Duration::ZERO);

    // Once the cut-off machine's lease ran out, the other one takes it over and finds the
    // record: it does not send the refresh token the vault still holds.
    let out = direct.run(&["refresh", "p"]);
    assert_one_line_error(&out, "its answer is not saved yet");
    assert!(
        stderr(&out).contains(&format!("pid {}", agent.pid())),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.refresh_requests(),
        1,
        "the spent refresh token was sent again"
    );

    // Back on line, the machine saves what it holds and clears the record.
    cutter.restore();
    let reply = cut_off
        .ask_agent(r#"{"v":1,"op":"refresh","profile":"p"}"#)
        .unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(bao.read("team/cut.lock")["data"]["spending"].is_null());
    let out = direct.run(&["refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 3);
    assert!(server.is_refresh_token_valid(&direct.stored("p", "refresh_token")));
}

#[test]
fn an_agent_cut_off_from_openbao_or_on_a_sealed_one_hands_out_what_it_holds() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let (_direct, cut_off, cutter) = team_behind_cutter(&bao, "team/away", &server);
    let _agent = Agent::start(&cut_off, &[]);
    let out = cut_off.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let access = stdout(&out).trim().to_string();

    cutter.cut();
    let started = Instant::now();
    let out = cut_off.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), access);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let out = cut_off.run(&["refresh", "p"]);
    assert!(!out.status.success(), "refreshed without the stored vault");
    assert_eq!(server.refresh_requests(), 0);
    cutter.restore();

    let sealed = bao.cli(&["operator", "seal"]).output().unwrap();
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    let out = cut_off.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), access);
    assert_eq!(server.refresh_requests(), 0);
}

#[test]
fn an_agent_whose_vault_it_cannot_decrypt_any_more_backs_off_and_says_so_once() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let (_direct, cut_off, cutter) = team_behind_cutter(&bao, "team/lost", &server);
    let agent = Agent::start(&cut_off, &[]);
    // A vault sealed to some other key only: this machine cannot open it.
    let (_other, other) = common::keygen(cut_off.home(), "other.txt");
    bao.put_vault(
        "team/lost",
        &common::age_encrypt("version = 2\n", &[&other], true),
    );

    wait_for("the agent's word", Duration::from_secs(10), || {
        agent.said().contains("cannot decrypt")
    });
    let before = cutter.requests();
    std::thread::sleep(Duration::from_secs(6));
    let asked = cutter.requests() - before;
    eprintln!("requests to OpenBao in 6 s with an undecryptable vault: {asked}");
    // Polling every second would be 6; a spin, thousands.
    assert!(asked <= 12, "{asked} requests to OpenBao in 6 s");
    assert_eq!(
        agent.said().matches("cannot decrypt").count(),
        1,
        "{}",
        agent.said()
    );
    let log = cut_off.log_text();
    assert!(log.len() < 64 * 1024, "the log grew to {} bytes", log.len());
}

/// The answers to the lease's write and to the save are lost after OpenBao applied them (a
/// node or a balancer dying mid-request). Neither write is sent again blindly: each is read
/// back, found to have landed, and the refresh goes on as if the answers had come.
#[test]
fn writes_whose_answers_are_lost_are_read_back_never_sent_again() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let (direct, env, proxy) = team_behind_write_faults(&bao, "team/lost", &server);
    let version = |path: &str| bao.read(path)["metadata"]["version"].as_u64().unwrap();
    let (vault_before, lease_before) = (version("team/lost"), version("team/lost.lock"));

    proxy.lose_next_answer_to("/v1/secret/data/team/lost.lock");
    proxy.lose_next_answer_to("/v1/secret/data/team/lost");
    let out = env.run(&["--no-agent", "refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(proxy.lost(), 2, "both answers were lost");
    assert_eq!(
        server.refresh_requests(),
        1,
        "the refresh token was sent once"
    );
    // One save, written once: the vault moved by one version.
    assert_eq!(version("team/lost"), vault_before + 1);
    assert!(version("team/lost.lock") > lease_before);
    let saved = env.stored("p", "refresh_token");
    assert!(server.is_refresh_token_valid(&saved));
    let out = direct.run(&["--no-agent", "refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 2);
}

/// Sends `signal` to process `pid`.
fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

#[test]
fn a_process_paused_as_it_records_its_refresh_never_sends_it_after_its_lease_ran_out() {
    use nix::sys::signal::Signal;
    let bao = OpenBao::start();
    let server = MockServer::start();
    let (direct, paused, proxy) = team_behind_write_faults(&bao, "team/paused", &server);
    let before = server.refresh_requests();

    // The record of the refresh token on its way is held back a moment, and the process
    // stopped then: it wakes long after its lease ran out, believing it holds it.
    let lock = "/v1/secret/data/team/paused.lock";
    proxy.delay_next_write_with(lock, "\"spending\"", Duration::from_millis(1500));
    let child = paused
        .command(&["--no-agent", "refresh", "p"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the record held back", Duration::from_secs(20), || {
        proxy.holding() == 1
    });
    signal(child.id(), Signal::SIGSTOP);

    // Another machine waits the lease out, finds the record and sends nothing.
    let out = direct.run(&["--no-agent", "refresh", "p"]);
    assert_one_line_error(&out, "its answer is not saved yet");
    assert!(
        stderr(&out).contains(&format!("pid {}", child.id())),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.refresh_requests(), before);

    // Woken, the process finds its lease gone and sends nothing either.
    signal(child.id(), Signal::SIGCONT);
    let woken = child.wait_with_output().unwrap();
    assert_one_line_error(&woken, "nothing was sent");
    assert_eq!(
        server.refresh_requests(),
        before,
        "sent after the lease ran out"
    );

    // Its process gone, the record no longer stands: the token is sent once, and saved.
    let out = direct.run(&["--no-agent", "refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), before + 1);
    assert!(server.is_refresh_token_valid(&direct.stored("p", "refresh_token")));
}
