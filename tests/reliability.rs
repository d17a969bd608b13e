//! Reliability and secrecy under concurrent use, crashes mid-refresh, junk on the listener.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::{Env, MockServer, stderr, stdout};

#[test]
fn two_processes_refreshing_one_profile_reach_the_server_once() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    server.set_latency(Duration::from_millis(400));
    let before = server.refresh_requests();
    let spawn = || {
        env.command(&["refresh", "p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert_eq!(server.refresh_requests() - before, 1, "both refreshed");
    let both = stderr(&a) + &stderr(&b);
    assert!(
        both.contains("refreshed by another tokdeck process"),
        "{both}"
    );
    // The vault holds the one live token.
    let live = server.last_refresh_token().unwrap();
    assert!(env.vault_text().contains(&live));
    server.set_latency(Duration::ZERO);
    assert!(env.run(&["refresh", "p"]).status.success());
}

#[test]
fn killed_mid_refresh_never_loses_the_integration() {
    let env = Env::new();
    let server = MockServer::start();
    // Doorkeeper keeps the old refresh token alive until the new access token is used.
    server.set_revoke_on_first_use(true);
    env.authorized_profile("p", &server, &[]);
    server.set_latency(Duration::from_millis(30));
    let mut jitter = common::Jitter::new(0x9e37_79b9_7f4a_7c15);
    let mut reported = 0;
    for round in 0..40 {
        let mut child = env
            .command(&["refresh", "p"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(10 + jitter.below(70)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            // It reported success: the token on disk is the newest the server issued.
            reported += 1;
            let newest = server.last_refresh_token().unwrap();
            assert!(env.vault_text().contains(&newest), "round {round}");
        }
        // Whatever the moment of death, tokdeck can refresh again.
        let again = env.run(&["refresh", "p"]);
        assert!(again.status.success(), "round {round}: {}", stderr(&again));
        // Using the new access token retires the refresh token it replaced, as the server does.
        assert!(env.run(&["check", "p"]).status.success(), "round {round}");
    }
    assert!(
        reported > 0 && reported < 40,
        "kills never landed mid-refresh ({reported}/40 finished)"
    );
}

#[test]
fn no_secret_leaks_outside_the_vault() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    let mut outputs = vec![env.run(&["exchange", "p", &code])];
    for args in [
        &["refresh", "p"][..],
        &["check", "p"],
        &["status"],
        &["status", "--json"],
        &["refresh", "--all"],
    ] {
        outputs.push(env.run(args));
    }
    let issued_access = server.last_access_token().unwrap();
    let issued_refresh = server.last_refresh_token().unwrap();
    let token_out = env.run(&["token", "p"]);
    assert_eq!(
        stdout(&token_out),
        issued_access,
        "token prints the token, and only it"
    );
    // Failures print no secret either.
    server.fail_next(common::Fault::Status(400), 1);
    outputs.push(env.run(&["refresh", "p"]));
    outputs.push(env.run(&["revoke", "p"]));
    let secrets = [
        common::CLIENT_SECRET,
        issued_access.as_str(),
        issued_refresh.as_str(),
        "access-",
        "refresh-",
    ];
    for out in &outputs {
        for secret in secrets {
            assert!(
                !stderr(out).contains(secret),
                "stderr leaks {secret}: {}",
                stderr(out)
            );
            assert!(
                !stdout(out).contains(secret),
                "stdout leaks {secret}: {}",
                stdout(out)
            );
        }
    }
    // No file but the vault and its backup holds a secret; vault, backup and lock are private.
    let vault_dir = env.vault().parent().unwrap().to_path_buf();
    for entry in walk(env.home()) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        if entry.starts_with(&vault_dir) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
            continue;
        }
        for secret in [common::CLIENT_SECRET, "access-", "refresh-"] {
            assert!(!text.contains(secret), "{} holds {secret}", entry.display());
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let dir_mode = std::fs::metadata(&vault_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    assert!(
        !env.log_text().is_empty(),
        "the log was written (and scanned above)"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn listener_survives_a_flood_of_junk_and_takes_only_its_callback() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokdeck::oauth::listener::{Listener, LoopbackTarget};
        let target = LoopbackTarget {
            addrs: vec!["127.0.0.1:0".parse().unwrap()],
            path: "/callback".into(),
        };
        let listener = Listener::bind(&target).await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback(), "listens on loopback only");
        let rejected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = rejected.clone();
        let waiting = tokio::spawn(async move {
            listener
                .wait_for_code("good-state", Duration::from_secs(20), move |_| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
                .await
        });
        let flood = tokio::task::spawn_blocking(move || {
            let send = |raw: &[u8]| {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.write_all(raw);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let mut reply = String::new();
                    let _ = s.read_to_string(&mut reply);
                    reply
                } else {
                    String::new()
                }
            };
            // Connections that send nothing and hang up.
            for _ in 0..50 {
                drop(TcpStream::connect(addr));
            }
            for i in 0..100 {
                let junk: Vec<u8> = (0..(i * 37 % 500)).map(|j| (j * 31 + i) as u8).collect();
                send(&junk);
            }
            assert!(
                send(b"GET /other?code=x&state=good-state HTTP/1.1\r\n\r\n")
                    .starts_with("HTTP/1.1 404")
            );
            assert!(send(b"POST /callback HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
            assert!(send(&[b'A'; 20_000]).starts_with("HTTP/1.1 431"));
            assert!(
                send(b"GET /callback?code=x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"),
                "missing state"
            );
            assert!(
                send(b"GET /callback?code=x&state=evil HTTP/1.1\r\n\r\n")
                    .starts_with("HTTP/1.1 400")
            );
            let ok = send(b"GET /callback?code=the-code&state=good-state HTTP/1.1\r\n\r\n");
            assert!(
                ok.starts_with("HTTP/1.1 200") && ok.contains("close this tab"),
                "{ok}"
            );
        });
        flood.await.unwrap();
        let code = waiting.await.unwrap().unwrap();
        assert_eq!(code.code, "the-code");
        assert_eq!(
            rejected.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "missing and wrong state reported"
        );
        // Closed after its one success: nothing answers a callback there any more. (The
        // port may be taken by then, or a connect to it may meet itself: what matters is
        // that no listener of ours takes a second code.)
        let after = tokio::task::spawn_blocking(move || {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return String::new();
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /callback?code=again&state=good-state HTTP/1.1\r\n\r\n");
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            reply
        })
        .await
        .unwrap();
        assert!(
            !after.contains("close this tab"),
            "the listener took a second callback: {after}"
        );
    });
}

/// A disk that fills up while a large vault is written: the save fails past the first early
/// sync of the new file (the file size limit stands in for a full disk, which the kernel
/// reports the same way, as a failed write), the old file stays as it was, no part of the new
/// one is left behind, and the rotated token is kept and saved by the next action, never
/// thrown away nor its dead predecessor sent.
#[test]
fn a_disk_full_while_a_large_vault_is_written_loses_no_token() {
    common::tool("prlimit");
    let env = Env::new();
    let server = MockServer::start();
    env.imported(&common::factorial_profiles(3_000));
    env.authorized_profile("p", &server, &[]);
    let before = env.vault_bytes();
    let limit = 5 * (1 << 19); // 2.5 MiB: past the first early sync, short of the file.
    assert!(before.len() > limit + (1 << 19), "{} bytes", before.len());
    let sent = server.last_refresh_token().unwrap();

    // The signal a write past the limit raises is ignored, so the write fails as on a full
    // disk; an ignored signal stays ignored across exec.
    let script = "trap '' XFSZ; exec prlimit --fsize=\"$0\" -- \"$@\"";
    let limit = limit.to_string();
    let bin = common::bin();
    let args = [
        script,
        &limit,
        bin.to_str().unwrap(),
        "refresh",
        "p",
        "--no-agent",
    ];
    let mut refresh = env.command_of(std::path::Path::new("/bin/sh"), &["-c"]);
    refresh.args(args);
    let out = refresh.output().unwrap();
    let message = stderr(&out);
    assert!(!out.status.success(), "the save went through: {message}");
    assert!(
        message.contains("saving them failed") && message.contains("keeps them"),
        "{message}"
    );
    // The disk's failure, named as such (not as a failed encryption).
    assert!(
        message.contains("cannot write") && message.contains("File too large"),
        "{message}"
    );
    assert_eq!(server.refresh_requests(), 1, "{message}");
    assert!(!server.is_refresh_token_valid(&sent));
    assert!(env.vault_bytes() == before, "the vault changed");
    let left: Vec<_> = std::fs::read_dir(env.vault().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(env.stored("p", "refresh_token"), sent);

    // Room again: the kept token is saved first, then refreshed; the dead one never leaves.
    let out = env.run(&["refresh", "p", "--no-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 2);
    let stored = env.stored("p", "refresh_token");
    assert_eq!(Some(stored.clone()), server.last_refresh_token());
    assert!(server.is_refresh_token_valid(&stored));
    assert!(env.vault_text().contains("name = \"p00042\""));
}
