//! `tokdeck token NAME` through the agent beside oidc-agent's `oidc-token NAME`, paired on one
//! machine against one real OpenID server (the django-oauth-toolkit fixture), one account
//! each; and `--version` of both (tokdeck's whole program, `tokdeck-core`, which answers it)
//! beside `/bin/true`, for what process start costs. Skipped, with a line saying so, when
//! oidc-agent (Debian's `oidc-agent-cli`) is not installed.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokdeck_testkit::dot::Dot;

const PAIRS: usize = 300;

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn tokdeck(home: &Path, args: &[&str]) -> Command {
    let mut cmd = support::command(home, args);
    cmd.env("TOKDECK_AGENT_SOCK", home.join("agent.sock"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(mut cmd: Command, input: &str) -> String {
    use std::io::Write;
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Two profiles of one app, each authorized by its own code: `tok` for tokdeck, and `oidc`,
/// whose refresh token goes to oidc-agent (tokdeck never uses it again). Returns the app's id
/// and secret, and that refresh token.
fn authorized(home: &Path, dot: &Dot) -> (String, String, String) {
    use age::secrecy::ExposeSecret;
    let app = dot.register(
        "confidential",
        "authorization-code",
        "http://127.0.0.1:9/callback",
    );
    run(tokdeck(home, &["init"]), "");
    for name in ["tok", "oidc"] {
        let add = [
            "add",
            name,
            "--issuer",
            &dot.issuer(),
            "--client-id",
            &app.client_id,
            "--redirect-uri",
            "http://127.0.0.1:9/callback",
            "--scope",
            "openid read offline_access",
        ];
        run(tokdeck(home, &add), &app.secret);
        let url = run(tokdeck(home, &["authorize", name, "--no-browser"]), "");
        let landing = dot.approve(url.trim());
        run(tokdeck(home, &["exchange", name, &landing]), "");
    }
    let store = support::open(
        &home.join("data/tokdeck/vault.age"),
        &home.join("config/tokdeck/identity.txt"),
    );
    let token = store.profile("oidc").unwrap().unwrap().token.unwrap();
    let refresh = token.refresh_token.unwrap().expose_secret().to_string();
    (app.client_id, app.secret, refresh)
}

/// Starts oidc-agent for `home` and loads account `bench` from `refresh`; the agent's socket
/// and pid.
fn oidc_agent(
    home: &Path,
    dot: &Dot,
    (id, secret, refresh): &(String, String, String),
) -> (String, String) {
    let started = Command::new("oidc-agent")
        .arg("--no-autoload")
        .env("HOME", home)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&started.stdout).to_string();
    let socket = text
        .split(';')
        .find_map(|part| part.trim().strip_prefix("OIDC_SOCK="))
        .unwrap_or_else(|| panic!("oidc-agent said: {text}"))
        .to_string();
    let pid = text
        .split(';')
        .find_map(|part| part.trim().strip_prefix("OIDCD_PID="))
        .unwrap_or_default()
        .to_string();
    let out = Command::new("oidc-gen")
        .args([
            format!("--iss={}/", dot.issuer()),
            format!("--client-id={id}"),
            format!("--client-secret={secret}"),
            format!("--rt={refresh}"),
            "--scope=openid read offline_access".into(),
            "--redirect-uri=http://localhost:8080/callback".into(),
            "--pw-cmd=echo tokdeck-bench".into(),
            "--prompt=none".into(),
            "--confirm-default".into(),
            "bench".into(),
        ])
        .env("HOME", home)
        .env("OIDC_SOCK", &socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oidc-gen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (socket, pid)
}

fn wall(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let took = start.elapsed();
    assert!(status.success(), "{cmd:?}");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("oidc: bench");
        return;
    }
    if !["oidc-agent", "oidc-gen", "oidc-token"]
        .iter()
        .all(|p| on_path(p))
    {
        println!(
            "oidc-agent is not installed (apt-get install -y oidc-agent-cli): the comparison is skipped"
        );
        return;
    }
    let dot = Dot::start();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let account = authorized(home, &dot);
    let (socket, pid) = oidc_agent(home, &dot, &account);
    let mut agent = tokdeck(home, &["agent"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !home.join("agent.sock").exists() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = || tokdeck(home, &["token", "tok"]);
    let oidc = || {
        let mut cmd = support::clean("oidc-token".as_ref());
        cmd.arg("bench").env("OIDC_SOCK", &socket).env("HOME", home);
        cmd
    };
    for _ in 0..20 {
        wall(&mut token());
        wall(&mut oidc());
    }
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PAIRS {
        let (a, b) = if i % 2 == 0 {
            (wall(&mut token()), wall(&mut oidc()))
        } else {
            let b = wall(&mut oidc());
            (wall(&mut token()), b)
        };
        ratios.push(a.as_secs_f64() / b.as_secs_f64());
        ours.push(a);
        theirs.push(b);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "{PAIRS} interleaved pairs, one account each: tokdeck token (agent) median {:.2?}, oidc-token median {:.2?}, median paired ratio {:.2}",
        median(ours),
        median(theirs),
        ratios[PAIRS / 2]
    );
    let version = |program: &Path, args: &[&str]| {
        median(
            (0..200)
                .map(|_| wall(support::clean(program).args(args)))
                .collect(),
        )
    };
    println!(
        "process start: tokdeck-core --version {:.2?}, oidc-token --version {:.2?}, /bin/true {:.2?}",
        version(&support::core_bin(), &["--version"]),
        version(Path::new("/usr/bin/oidc-token"), &["--version"]),
        version(Path::new("/bin/true"), &[])
    );
    let _ = agent.kill();
    let _ = agent.wait();
    // oidc-agent forks into the background: stop it by its pid.
    let _ = Command::new("kill").arg(&pid).status();
}
