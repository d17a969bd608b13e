//! The agent under systemd: the unit it prints passes `systemd-analyze verify` with no
//! warning (where systemd is installed), and the agent tells a service manager it is ready
//! (`READY=1` on `NOTIFY_SOCKET`) once its socket listens, as `Type=notify` expects.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

use common::{Env, stderr, stdout};

#[test]
fn the_unit_is_a_sandboxed_notify_service_that_systemd_accepts() {
    let env = Env::new();
    let out = env.run(&["agent", "--systemd-unit"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let unit = stdout(&out);
    let vault_folder = env.vault().parent().unwrap().display().to_string();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ProtectSystem=strict",
        &format!("ReadWritePaths={vault_folder}"),
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "LimitCORE=0",
    ] {
        assert!(
            unit.contains(&format!("\n{line}\n")),
            "{line} missing:\n{unit}"
        );
    }
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the unit's syntax was not verified");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokdeck-agent.service");
    std::fs::write(&file, &unit).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Unknown keys only warn: any output is a defect of the unit.
    assert_eq!(stderr(&out), "", "{unit}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[test]
fn the_agent_says_ready_once_its_socket_listens() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&notify).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut agent = env
        .command(&["agent"])
        .env("NOTIFY_SOCKET", &notify)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut message = [0u8; 256];
    let got = manager.recv(&mut message);
    let socket_was_there = env.agent_socket().exists();
    let _ = agent.kill();
    let _ = agent.wait();
    let n = got.expect("no readiness message within 30 s");
    let text = String::from_utf8_lossy(&message[..n]).to_string();
    assert!(text.contains("READY=1"), "{text}");
    assert!(socket_was_there, "ready before the socket listened");
}
