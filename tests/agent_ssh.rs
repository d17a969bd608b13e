//! The agent forwarded over SSH: a real `sshd` (Debian's openssh-server) on a loopback port,
//! run by the test with a configuration of its own; `ssh -R` forwards the laptop's agent
//! socket to the "remote" home, where `tokdeck token` works with no vault and no key.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture::free_port;
use common::{Env, MockServer, stderr, stdout, tool};

/// A process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sshd() -> PathBuf {
    let path = PathBuf::from("/usr/sbin/sshd");
    assert!(
        path.is_file(),
        "this test runs a real sshd, which is not installed: apt-get install -y openssh-server"
    );
    path
}

fn keygen(file: &Path) {
    let out = tool("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Starts sshd on a free loopback port, accepting `user_key` for this user; its port.
fn start_sshd(dir: &Path, user_key: &Path) -> (Running, u16) {
    // sshd insists on its privilege separation folder.
    std::fs::create_dir_all("/run/sshd").unwrap();
    keygen(&dir.join("host_key"));
    let public = std::fs::read_to_string(user_key.with_extension("pub")).unwrap();
    std::fs::write(dir.join("authorized_keys"), public).unwrap();
    for _ in 0..3 {
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowStreamLocalForwarding yes\nStreamLocalBindUnlink yes\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(sshd())
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let running = Running(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (running, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!(
        "sshd did not start: {}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

/// `ssh -N -R remote:local`, waiting until the remote socket exists.
fn forward(port: u16, key: &Path, remote: &Path, local: &Path, log: &Path) -> Running {
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let child = tool("ssh")
        .args(["-N", "-p", &port.to_string(), "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "BatchMode=yes",
            "-R",
        ])
        .arg(format!("{}:{}", remote.display(), local.display()))
        .arg(format!("{}@127.0.0.1", user.trim()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !remote.exists() {
        assert!(
            Instant::now() < deadline,
            "no forwarded socket: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

#[test]
fn a_remote_machine_uses_the_laptops_agent_through_ssh_forwarding() {
    let server = MockServer::start();
    let laptop = Env::new();
    laptop.authorized_profile("p", &server, &[]);
    let agent = Running(
        laptop
            .command(&["agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !laptop.agent_socket().exists() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("user_key");
    keygen(&key);
    let (_sshd, port) = start_sshd(dir.path(), &key);
    // The remote machine: a home with no vault and no key; its agent socket is the forward.
    let remote = Env::empty();
    let log = dir.path().join("ssh.log");
    let _forward = forward(
        port,
        &key,
        &remote.agent_socket(),
        &laptop.agent_socket(),
        &log,
    );
    let out = remote.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), server.last_access_token().unwrap());
    assert!(!remote.vault().exists() && !remote.identity().exists());
    let out = remote.run(&["status", "--json"]);
    assert!(stdout(&out).contains("\"name\": \"p\""), "{}", stderr(&out));
    // The far end gets tokens and status only: no shutdown, no refresh at will.
    let refreshes = server.refresh_requests();
    for line in [
        r#"{"v":1,"op":"shutdown"}"#,
        r#"{"v":1,"op":"refresh","profile":"p"}"#,
        r#"{"v":1,"op":"reload"}"#,
    ] {
        let reply = remote.ask_agent(line).unwrap();
        assert_eq!(reply["ok"], false, "{line}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains("forwarded"),
            "{reply}"
        );
    }
    for _ in 0..20 {
        // Longer than any token lasts: a local client would get a refresh each time.
        let _ = remote.run(&["token", "p", "--min-valid", "30d"]);
    }
    assert_eq!(
        server.refresh_requests(),
        refreshes,
        "the far end forced refreshes"
    );
    // The laptop itself still may.
    let reply = laptop
        .ask_agent(r#"{"v":1,"op":"refresh","profile":"p"}"#)
        .unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    // The forward ends with the SSH session: the remote falls back, and has nothing to open.
    drop(_forward);
    let out = remote.run(&["token", "p"]);
    assert!(!out.status.success());
    drop(agent);
}
