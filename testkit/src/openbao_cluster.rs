//! A three-node OpenBao cluster on integrated raft storage, as production runs it, behind a
//! real HAProxy (Debian's `haproxy`) that routes every request to the active node by
//! `/v1/sys/health` (200 on the active node only). A node can be killed and started again,
//! so a test can make the cluster elect a new leader in the middle of its work.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Reply, free_port, http_with};

/// One node: its ports, its folder, and its process while it runs.
struct Node {
    id: String,
    api: u16,
    cluster: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn health(&self) -> Option<u16> {
        http_with(self.api, "GET", "/v1/sys/health", None, &[]).map(|r| r.status)
    }
}

/// A running cluster and its proxy; everything is killed when dropped.
pub struct Cluster {
    nodes: Vec<Node>,
    proxy: Child,
    proxy_port: u16,
    root: tempfile::TempDir,
    unseal_key: String,
    pub token: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

/// Elections take a second or two with `performance_multiplier = 1`; this is the bound.
const SETTLE: Duration = Duration::from_secs(60);

impl Cluster {
    /// Starts three nodes, initialises and unseals the first, joins the other two to it,
    /// mounts KV version 2 at `secret/`, and starts HAProxy in front of them.
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (1..=3)
            .map(|n| Node {
                id: format!("node{n}"),
                api: free_port(),
                cluster: free_port(),
                dir: root.path().join(format!("node{n}")),
                child: None,
            })
            .collect();
        let peers: Vec<u16> = nodes.iter().map(|n| n.api).collect();
        for node in &mut nodes {
            write_config(node, &peers);
        }
        let proxy_port = free_port();
        let proxy = start_proxy(root.path(), proxy_port, &peers);
        let mut cluster = Self {
            nodes,
            proxy,
            proxy_port,
            root,
            unseal_key: String::new(),
            token: String::new(),
        };
        cluster.start_node(0);
        cluster.initialise();
        // Autopilot makes a joined node a voter once it was healthy this long (10 s else).
        let quick = serde_json::json!({"server_stabilization_time": "1s"});
        let tuned = cluster.node_api(0, "POST", "/v1/sys/storage/raft/autopilot/configuration", Some(&quick));
        assert!(matches!(tuned.status, 200 | 204), "autopilot: {}", tuned.body);
        for at in 1..3 {
            cluster.start_node(at);
            cluster.unseal(at);
        }
        cluster.wait_until("three voters, and the proxy reaches the leader", |c| {
            c.voters() == 3 && c.api("GET", "/v1/sys/health", None).status == 200
        });
        cluster.mount_kv();
        cluster
    }

    fn initialise(&mut self) {
        let first = self.nodes[0].api;
        wait(&format!("node1 answers\n{}", self.log(0)), || {
            http_with(first, "GET", "/v1/sys/health", None, &[]).is_some()
        });
        let body = serde_json::json!({"secret_shares": 1, "secret_threshold": 1}).to_string();
        let init = http_with(first, "PUT", "/v1/sys/init", Some(&body), &[]).unwrap();
        assert_eq!(init.status, 200, "operator init: {}", init.body);
        let init: serde_json::Value = serde_json::from_str(&init.body).unwrap();
        self.token = init["root_token"].as_str().unwrap().to_string();
        self.unseal_key = init["keys_base64"][0].as_str().unwrap().to_string();
        self.unseal(0);
        wait(&format!("node1 is active\n{}", self.log(0)), || {
            http_with(first, "GET", "/v1/sys/health", None, &[]).is_some_and(|r| r.status == 200)
        });
    }

    fn mount_kv(&mut self) {
        let kv = serde_json::json!({"type": "kv", "options": {"version": "2"}});
        self.wait_until("KV version 2 is mounted at secret/", |c| {
            matches!(c.api("POST", "/v1/sys/mounts/secret", Some(&kv)).status, 204 | 400)
        });
        let probe = serde_json::json!({"data": {"ready": "yes"}});
        self.wait_until("KV at secret/ takes writes", |c| {
            c.api("POST", "/v1/secret/data/tokdeck-fixture-ready", Some(&probe)).status == 200
        });
    }

    fn start_node(&mut self, at: usize) {
        let node = &mut self.nodes[at];
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("stderr.txt"))
            .unwrap();
        let child = Command::new(crate::openbao::binary())
            .arg("server")
            .arg(format!("-config={}", node.dir.join("config.hcl").display()))
            .env_clear()
            .env("HOME", &node.dir)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// Unseals node `at` (a node that joins is unsealed with the leader's key).
    fn unseal(&self, at: usize) {
        let port = self.nodes[at].api;
        let body = serde_json::json!({"key": self.unseal_key}).to_string();
        wait(&format!("{} takes its unseal key\n{}", self.nodes[at].id, self.log(at)), || {
            http_with(port, "PUT", "/v1/sys/unseal", Some(&body), &[])
                .is_some_and(|r| r.status == 200)
        });
    }

    /// How many nodes vote in raft elections, as the leader's configuration says.
    fn voters(&self) -> usize {
        let reply = self.api("GET", "/v1/sys/storage/raft/configuration", None);
        serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|json| {
                json["data"]["config"]["servers"]
                    .as_array()
                    .map(|servers| servers.iter().filter(|s| s["voter"] == true).count())
            })
            .unwrap_or(0)
    }

    fn node_api(&self, at: usize, method: &str, target: &str, body: Option<&serde_json::Value>) -> Reply {
        let text = body.map(serde_json::Value::to_string);
        let token = [("X-Vault-Token", self.token.as_str())];
        http_with(self.nodes[at].api, method, target, text.as_deref(), &token).expect("the node answers")
    }

    /// The index of the node that is active now, if one is.
    pub fn active(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.health() == Some(200))
    }

    /// Kills the active node (SIGKILL: no step-down), and returns its index.
    pub fn kill_active(&mut self) -> usize {
        let at = self.active().expect("a node is active");
        self.nodes[at].stop();
        at
    }

    /// Waits until another node is active and the proxy reaches it; returns how long that took.
    pub fn wait_for_leader(&mut self) -> Duration {
        let from = Instant::now();
        self.wait_until("a new leader is elected and reached through the proxy", |c| {
            c.active().is_some() && c.api("GET", "/v1/sys/health", None).status == 200
        });
        from.elapsed()
    }

    /// Starts node `at` again and unseals it: it rejoins as a standby.
    pub fn restart(&mut self, at: usize) {
        self.start_node(at);
        self.unseal(at);
        self.wait_until("the restarted node rejoins", |c| {
            matches!(c.nodes[at].health(), Some(200 | 429)) && c.voters() == 3
        });
    }

    /// The proxy's port: what clients are given.
    pub fn port(&self) -> u16 {
        self.proxy_port
    }

    /// The vault location of `path` under `secret/`, through the proxy.
    pub fn location(&self, path: &str) -> String {
        format!("openbao+http://127.0.0.1:{}/secret/{path}", self.proxy_port)
    }

    /// One request through the proxy with the root token; a request the proxy could not
    /// pass on reads as status 0.
    pub fn api(&self, method: &str, target: &str, body: Option<&serde_json::Value>) -> Reply {
        let text = body.map(serde_json::Value::to_string);
        let token = [("X-Vault-Token", self.token.as_str())];
        http_with(self.proxy_port, method, target, text.as_deref(), &token).unwrap_or(Reply {
            status: 0,
            location: None,
            body: String::new(),
        })
    }

    /// The secret at `secret/PATH`: its `data` and `metadata`.
    pub fn read(&self, path: &str) -> serde_json::Value {
        let reply = self.api("GET", &format!("/v1/secret/data/{path}"), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["data"].clone()
    }

    /// Node `at`'s log, for failure messages.
    pub fn log(&self, at: usize) -> String {
        std::fs::read_to_string(self.nodes[at].dir.join("stderr.txt")).unwrap_or_default()
    }

    /// The proxy's log.
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("haproxy.txt")).unwrap_or_default()
    }

    fn wait_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + SETTLE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {}s\n{}",
                SETTLE.as_secs(),
                self.report()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What a failure message needs: each node's process, health and last log lines, the raft
    /// configuration, and the proxy's log.
    fn report(&mut self) -> String {
        let raft = self.api("GET", "/v1/sys/storage/raft/configuration", None).body;
        let mut out = format!("raft configuration: {raft}\n");
        for at in 0..self.nodes.len() {
            let health = self.nodes[at].health();
            let node = &mut self.nodes[at];
            let process = match node.child.as_mut().map(Child::try_wait) {
                None => "stopped".to_string(),
                Some(Ok(None)) => "running".to_string(),
                Some(Ok(Some(status))) => format!("exited: {status}"),
                Some(Err(e)) => format!("unknown: {e}"),
            };
            let log = self.log(at);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(25)..].join("\n");
            let node = &self.nodes[at];
            out.push_str(&format!(
                "--- {} (api {}, cluster {}): {process}, health {health:?}\n{tail}\n",
                node.id, node.api, node.cluster
            ));
        }
        out.push_str(&format!("--- haproxy\n{}", self.proxy_log()));
        out
    }
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {}s", SETTLE.as_secs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node's config: raft storage joining the other two, fast elections.
fn write_config(node: &Node, peers: &[u16]) {
    std::fs::create_dir_all(node.dir.join("raft")).unwrap();
    let joins: String = peers
        .iter()
        .filter(|&&p| p != node.api)
        .map(|p| format!("  retry_join {{\n    leader_api_addr = \"http://127.0.0.1:{p}\"\n  }}\n"))
        .collect();
    let config = format!(
        "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"{id}\"\n  performance_multiplier = 1\n{joins}}}\n\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{api}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
         api_addr = \"http://127.0.0.1:{api}\"\ncluster_addr = \"http://127.0.0.1:{cluster}\"\n\
         disable_mlock = true\n",
        raft = node.dir.join("raft").display(),
        id = node.id,
        api = node.api,
        cluster = node.cluster,
    );
    std::fs::write(node.dir.join("config.hcl"), config).unwrap();
}

/// HAProxy in the foreground, sending each request to the node whose health says active,
/// checked every 250 ms.
fn start_proxy(dir: &Path, port: u16, nodes: &[u16]) -> Child {
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server node{} 127.0.0.1:{p} check\n", i + 1))
        .collect();
    let config = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  \
         default-server inter 250ms fall 1 rise 1\n\
         frontend bao\n  bind 127.0.0.1:{port}\n  default_backend active\n\
         backend active\n  option httpchk GET /v1/sys/health\n  http-check expect status 200\n{servers}"
    );
    let file = dir.join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    let log = std::fs::File::create(dir.join("haproxy.txt")).unwrap();
    let haproxy = ["/usr/sbin/haproxy", "haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("haproxy");
    Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("haproxy is installed (apt-get install haproxy)")
}
