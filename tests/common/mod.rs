//! Shared test harness: a temp home for the binary, and the mock OAuth server.

#![allow(dead_code)]

pub mod app;
pub mod cutter;
pub mod running;
pub mod tmux;
pub mod write_faults;

#[allow(unused_imports)]
pub use tokdeck_testkit::{doorkeeper, dot, fixture, mock, openbao, openbao_cluster, qr};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use mock::{CLIENT_ID, CLIENT_SECRET, MockServer};
#[allow(unused_imports)]
pub use mock::{Fault, HOSTILE};

/// A command for an external program the tests drive (`age`, `age-keygen`, `ssh-keygen`,
/// `tmux`); when it is not installed the test fails with the line that installs it.
pub fn tool(program: &str) -> Command {
    let package = match program {
        "age" | "age-keygen" => "age",
        "ssh-keygen" => "openssh-client",
        "groff" => "groff-base",
        "setsid" | "prlimit" => "util-linux",
        "promtool" => "prometheus",
        "sshd" => "openssh-server",
        other => other,
    };
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test drives `{program}`, which is not installed: apt-get install -y {package}"
    );
    Command::new(program)
}

/// The built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tokdeck"))
}

/// A private home for one test: config, data and state dirs, a vault path, an identity.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Variables every command of this home gets (a vault in OpenBao and its token, say).
    pub vars: Vec<(String, String)>,
}

impl Env {
    /// A home with nothing in it.
    pub fn empty() -> Self {
        Self::empty_with(&[])
    }

    /// A home with nothing in it, whose commands get `vars`.
    pub fn empty_with(vars: &[(&str, &str)]) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A home whose vault is at `path` in `bao`'s `secret/` mount, initialised unless
    /// another home did already (a second machine of a team).
    pub fn team(bao: &openbao::OpenBao, path: &str) -> Self {
        Self::team_at(&bao.location(path), &bao.token)
    }

    /// A home whose vault is at `location`, reached with the OpenBao `token`, initialised
    /// unless another home did already.
    pub fn team_at(location: &str, token: &str) -> Self {
        let env = Self::empty_with(&[("TOKDECK_VAULT", location), ("BAO_TOKEN", token)]);
        let out = env.run(&["init"]);
        let said = stderr(&out);
        assert!(
            out.status.success() || said.contains("already exists"),
            "init failed: {said}"
        );
        env
    }

    /// A second machine of the team on `bao`'s `path`: its own home and age key, made a
    /// recipient by `admin`.
    pub fn second_machine(bao: &openbao::OpenBao, path: &str, admin: &Env) -> Self {
        Self::second_machine_at(bao, &bao.location(path), admin)
    }

    /// The same, reaching the vault at `location` (through a proxy, say).
    pub fn second_machine_at(bao: &openbao::OpenBao, location: &str, admin: &Env) -> Self {
        Self::second_machine_with(location, &bao.token, admin)
    }

    /// The same, with the OpenBao `token`.
    pub fn second_machine_with(location: &str, token: &str, admin: &Env) -> Self {
        let env = Self::empty_with(&[("TOKDECK_VAULT", location), ("BAO_TOKEN", token)]);
        std::fs::create_dir_all(env.identity().parent().unwrap()).unwrap();
        let out = tool("age-keygen")
            .arg("-o")
            .arg(env.identity())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let public = String::from_utf8(out.stderr).unwrap();
        let public = public.trim().trim_start_matches("Public key: ");
        let out = admin.run(&["recipients", "add", public]);
        assert!(out.status.success(), "recipients add: {}", stderr(&out));
        env
    }

    /// Adds profile `name` on `server` (a confidential app, basic auth, discovery) with `extra`
    /// arguments, and authorizes it through the loopback listener as alice's browser would.
    /// Returns what `authorize` said.
    pub fn authorize_on_dot(
        &self,
        server: &dot::Dot,
        name: &str,
        scope: &str,
        extra: &[&str],
    ) -> String {
        let port = free_port();
        let redirect = format!("http://127.0.0.1:{port}/cb");
        let app = server.register("confidential", "authorization-code", &redirect);
        let issuer = server.issuer();
        let mut line = vec![
            "add",
            name,
            "--issuer",
            &issuer,
            "--client-id",
            &app.client_id,
            "--redirect-uri",
            &redirect,
            "--scope",
            scope,
        ];
        line.extend_from_slice(extra);
        let out = self.run_with_stdin(&line, &app.secret);
        assert!(out.status.success(), "add {name}: {}", stderr(&out));
        self.reauthorize_on_dot(server, name, port)
    }

    /// Authorizes profile `name` of `server` again, through its loopback listener on `port`.
    pub fn reauthorize_on_dot(&self, server: &dot::Dot, name: &str, port: u16) -> String {
        let (child, url) = self.start_authorize(&[name, "--listen"]);
        let callback = server.approve(&url);
        let reply = fixture::deliver(port, &callback)
            .unwrap_or_else(|| panic!("the listener answers {callback}\n{url}\n{}", server.log()));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "authorize: {}\n{}",
            stderr(&out),
            server.log()
        );
        stderr(&out)
    }

    /// Adds profile `name` for `app` on a real Doorkeeper `server`, secret on stdin.
    pub fn add_doorkeeper_profile(
        &self,
        server: &doorkeeper::Doorkeeper,
        app: &doorkeeper::App,
        name: &str,
        extra: &[&str],
    ) {
        let app_args = ["--client-id", &app.uid, "--redirect-uri", &app.redirect_uri];
        self.add_at(name, &server.base_url(), &app_args, extra, &app.secret);
    }

    /// `add NAME --base-url BASE` with the app's `app_args` and the test's `extra`, the client
    /// secret on stdin.
    fn add_at(&self, name: &str, base: &str, app_args: &[&str], extra: &[&str], secret: &str) {
        let mut args = vec!["add", name, "--base-url", base];
        args.extend_from_slice(app_args);
        args.extend_from_slice(extra);
        let out = self.run_with_stdin(&args, secret);
        assert!(out.status.success(), "add failed: {}", stderr(&out));
    }

    /// Adds profile `name` for `app` on a real Doorkeeper `server` (secret on stdin) and
    /// authorizes it: the out-of-band page approved as a browser would, then `exchange`.
    pub fn doorkeeper_profile(
        &self,
        server: &doorkeeper::Doorkeeper,
        app: &doorkeeper::App,
        name: &str,
        extra: &[&str],
    ) {
        self.add_doorkeeper_profile(server, app, name, extra);
        let url = stdout(&self.run(&["authorize", name, "--no-browser"]));
        let landing = server.approve(url.trim());
        let out = self.run(&["exchange", name, &landing]);
        assert!(out.status.success(), "exchange: {}", stderr(&out));
    }

    /// The value of variable `key` this home's commands get.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A home with an initialised vault (key-based, the default identity).
    pub fn new() -> Self {
        let env = Self::empty();
        let out = env.run(&["init"]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        env
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn vault(&self) -> PathBuf {
        self.home().join("data/tokdeck/vault.age")
    }

    pub fn identity(&self) -> PathBuf {
        self.home().join("config/tokdeck/identity.txt")
    }

    pub fn config_file(&self) -> PathBuf {
        self.home().join("config/tokdeck/config.toml")
    }

    /// This home's agent socket (each test has its own).
    pub fn agent_socket(&self) -> PathBuf {
        self.home().join("agent.sock")
    }

    /// Writes `config.toml`.
    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.config_file().parent().unwrap()).unwrap();
        std::fs::write(self.config_file(), text).unwrap();
    }

    /// A command for the binary with this home and no inherited tokdeck settings.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(&bin(), args)
    }

    /// A command for `program` (a copy of or link to the binary) set up as [`Self::command`].
    pub fn command_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join("config"))
            .env("XDG_DATA_HOME", self.home().join("data"))
            .env("XDG_STATE_HOME", self.home().join("state"))
            .env("TOKDECK_AGENT_SOCK", self.agent_socket())
            .env("TOKDECK_LOG", "debug")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs the binary with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that refuses its arguments exits without reading stdin: the pipe is then
        // closed, which is no failure of the test.
        let written = child.stdin.take().unwrap().write_all(input.as_bytes());
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        child.wait_with_output().unwrap()
    }

    /// Adds a profile pointing at `server`, secret piped on stdin.
    pub fn add_profile(&self, name: &str, server: &MockServer, extra: &[&str]) {
        self.add_profile_redirecting(name, server, "urn:ietf:wg:oauth:2.0:oob", extra);
    }

    /// Adds a profile whose redirect URI is a free loopback port; returns the port.
    pub fn add_loopback_profile(&self, name: &str, server: &MockServer, extra: &[&str]) -> u16 {
        let port = free_port();
        let redirect = format!("http://127.0.0.1:{port}/callback");
        self.add_profile_redirecting(name, server, &redirect, extra);
        port
    }

    /// Adds a profile at `server` with `redirect_uri`, secret piped on stdin.
    pub fn add_profile_redirecting(
        &self,
        name: &str,
        server: &MockServer,
        redirect_uri: &str,
        extra: &[&str],
    ) {
        let app_args = ["--client-id", CLIENT_ID, "--redirect-uri", redirect_uri];
        self.add_at(name, &server.base_url(), &app_args, extra, CLIENT_SECRET);
    }

    /// Starts `tokdeck authorize ARGS --no-browser` and reads the first line of its stdout
    /// (the address to open).
    pub fn start_authorize(&self, args: &[&str]) -> (std::process::Child, String) {
        use std::io::{BufRead, BufReader};
        let mut line = vec!["authorize"];
        line.extend_from_slice(args);
        line.push("--no-browser");
        let mut child = self
            .command(&line)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        (child, first.trim().to_string())
    }

    /// Adds a profile and gives it tokens through a code exchange.
    pub fn authorized_profile(&self, name: &str, server: &MockServer, extra: &[&str]) {
        self.add_profile(name, server, extra);
        let company = extra.windows(2).any(|w| w == ["--owner", "company"]);
        let code = server.issue_code(company, "urn:ietf:wg:oauth:2.0:oob");
        let out = self.run(&["exchange", name, &code]);
        assert!(out.status.success(), "exchange failed: {}", stderr(&out));
    }

    /// Imports the profiles of the vault text `text` (`tokdeck import`), as a team moving in
    /// would.
    pub fn imported(&self, text: &str) {
        let file = self.home().join("apps.toml");
        std::fs::write(&file, text).unwrap();
        let out = self.run(&["import", file.to_str().unwrap()]);
        assert!(out.status.success(), "import: {}", stderr(&out));
    }

    /// The vault decrypted by the reference age CLI: the file, or what OpenBao holds.
    pub fn vault_text(&self) -> String {
        let out = age_decrypt(self, &self.vault_bytes());
        assert!(out.status.success(), "age -d failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Replaces the vault with `text` encrypted by the reference age CLI to this env's key
    /// (a hand edit: `age -d`, an editor, `age -e`). The text goes through a pipe.
    pub fn write_vault_text(&self, text: &str) {
        use std::io::Write;
        let mut age = tool("age")
            .arg("-e")
            .arg("-i")
            .arg(self.identity())
            .arg("-o")
            .arg(self.vault())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        age.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(age.wait().unwrap().success(), "age -e failed");
    }

    /// The value of `field` in profile `name`, read from the decrypted vault ("" if unset).
    pub fn stored(&self, name: &str, field: &str) -> String {
        let text = self.vault_text();
        let start = text
            .find(&format!("name = \"{name}\""))
            .expect("profile in vault");
        text[start..]
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field} = \"")))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default()
    }

    /// The stored vault: the file, or the armored ciphertext OpenBao holds.
    pub fn vault_bytes(&self) -> Vec<u8> {
        match self.var("TOKDECK_VAULT").and_then(openbao::split_location) {
            Some((port, path)) => {
                let reply = fixture::http_with(
                    port,
                    "GET",
                    &format!("/v1/secret/data/{path}"),
                    None,
                    &[("X-Vault-Token", self.var("BAO_TOKEN").unwrap_or_default())],
                )
                .expect("OpenBao answers");
                assert_eq!(reply.status, 200, "{}", reply.body);
                let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
                json["data"]["data"]["age"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
                    .to_vec()
            }
            None => std::fs::read(self.vault()).unwrap(),
        }
    }

    /// One request line to this home's agent, and its answer.
    pub fn ask_agent(&self, line: &str) -> Option<serde_json::Value> {
        ask_socket(&self.agent_socket(), line)
    }

    /// Everything in the state dir's log file.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.home().join("state/tokdeck/tokdeck.log")).unwrap_or_default()
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a failed run printed exactly one line on stderr containing `needle`.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure, got success");
    let err = stderr(out);
    assert!(err.contains(needle), "stderr lacks '{needle}': {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
}

/// A loopback port nobody listens on right now.
pub use fixture::free_port;

/// Deterministic pseudo-random waits (xorshift), so kill-timing tests vary but reproduce.
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next value in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// A new age key in `dir`: (identity file, public key).
pub fn keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let file = dir.join(name);
    let out = tool("age-keygen").arg("-o").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8(out.stderr).unwrap();
    (
        file,
        said.trim().trim_start_matches("Public key: ").to_string(),
    )
}

/// The age public key of `env`'s identity.
pub fn public_key(env: &Env) -> String {
    let out = tool("age-keygen")
        .arg("-y")
        .arg(env.identity())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `age -d` with `env`'s key of `ciphertext`, given on stdin.
pub fn age_decrypt(env: &Env, ciphertext: &[u8]) -> Output {
    let mut child = tool("age")
        .arg("-d")
        .arg("-i")
        .arg(env.identity())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written from another thread: age writes while it reads, and a large vault fills the
    // pipe of its output before all the input is in.
    let mut stdin = child.stdin.take().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || stdin.write_all(ciphertext).unwrap());
        child.wait_with_output().unwrap()
    })
}

/// Whether `env`'s key opens the armored age file `armored`.
pub fn opens(env: &Env, armored: &str) -> bool {
    age_decrypt(env, armored.as_bytes()).status.success()
}

/// Vault text of `n` profiles `p00000`.. of about 1 KB each, as a Factorial integration's are.
pub fn factorial_profiles(n: usize) -> String {
    let mut text = String::from("version = 1\n");
    for i in 0..n {
        text.push_str(&format!(
            "\n[[profile]]\nname = \"p{i:05}\"\nprovider = \"factorial\"\nclient_id = \"client-{i:05}-{pad}\"\nclient_secret = \"secret-{i:05}-{pad}\"\nredirect_uri = \"https://integrations.example.com/oauth/callback/{i:05}\"\nowner = \"user\"\nscopes = [\"read\", \"write\"]\nnotes = \"{notes}\"\n[profile.endpoints]\nbase_url = \"https://api.factorialhr.com\"\n",
            pad = "x".repeat(64),
            notes = "n".repeat(600),
        ));
    }
    text
}

/// The policy the README gives a member or an agent (its `hcl` block).
pub fn readme_policy() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let from = readme
        .find("The policy a member or an agent needs")
        .unwrap();
    let block = &readme[from..];
    let start = block.find("```hcl\n").unwrap() + "```hcl\n".len();
    block[start..start + block[start..].find("```").unwrap()].to_string()
}

/// `text` encrypted by the age CLI to `recipients`, armored when `armor`.
pub fn age_encrypt(text: &str, recipients: &[&str], armor: bool) -> Vec<u8> {
    let mut age = tool("age");
    age.arg("-e");
    if armor {
        age.arg("-a");
    }
    for r in recipients {
        age.arg("-r").arg(r);
    }
    let mut child = age
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "age -e failed");
    out.stdout
}

/// One request line to the agent listening on `socket`, and its answer.
pub fn ask_socket(socket: &Path, line: &str) -> Option<serde_json::Value> {
    use std::io::{BufRead, BufReader};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    stream.write_all(line.as_bytes()).ok()?;
    stream.write_all(b"\n").ok()?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).ok()?;
    serde_json::from_str(&reply).ok()
}

/// A profile named `name` at `base_url` built through the library, with the mock server's
/// client, holding `token`.
pub fn library_profile(
    name: &str,
    base_url: &str,
    token: Option<tokdeck::vault::Token>,
) -> tokdeck::vault::Profile {
    let mut p = tokdeck::vault::Profile::new(
        name.to_string(),
        tokdeck::vault::Provider::Custom,
        tokdeck::vault::Endpoints::at(base_url),
        CLIENT_ID.into(),
        age::secrecy::SecretString::from(CLIENT_SECRET.to_string()),
        "urn:ietf:wg:oauth:2.0:oob".into(),
    );
    p.token = token;
    p
}

/// A user token obtained now, with `refresh_token`, its access token ending at `expires_at`
/// and its refresh window at `window_end`.
pub fn library_token(
    refresh_token: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    window_end: chrono::DateTime<chrono::Utc>,
) -> tokdeck::vault::Token {
    tokdeck::vault::Token {
        access_token: age::secrecy::SecretString::from(format!("access-{refresh_token}")),
        refresh_token: Some(age::secrecy::SecretString::from(refresh_token)),
        token_type: "Bearer".into(),
        scope: None,
        obtained_at: chrono::Utc::now(),
        expires_at: Some(expires_at),
        refresh_expires_at: Some(window_end),
        id_token: None,
    }
}

/// Writes a new vault of `profiles` at `path` through the library, encrypted to a new age key
/// written at `key`, as many profiles as a test needs without a command each.
pub fn library_vault(path: &Path, key: &Path, profiles: Vec<tokdeck::vault::Profile>) {
    use tokdeck::vault::{IdentityFile, Sealing, Store, Unlock, VaultData};
    for folder in [path.parent(), key.parent()].into_iter().flatten() {
        std::fs::create_dir_all(folder).unwrap();
    }
    let id = IdentityFile::generate(key).unwrap();
    let sealing = Sealing::Recipients(id.recipients.clone());
    let data = VaultData {
        profiles,
        ..VaultData::default()
    };
    Store::create(path, data, sealing, Unlock::Identity(id)).unwrap();
}
