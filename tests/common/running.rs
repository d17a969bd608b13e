//! A `tokdeck agent` the test started: its stderr kept in a file of its home, waited for until
//! its socket exists, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::Env;

pub struct Agent {
    pub child: Child,
    log: PathBuf,
}

impl Agent {
    /// `tokdeck agent` with `extra` arguments, in `env`.
    pub fn start(env: &Env, extra: &[&str]) -> Self {
        let log = env.home().join("agent.log");
        let mut args = vec!["agent"];
        args.extend_from_slice(extra);
        let child = env
            .command(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !env.agent_socket().exists() {
            assert!(Instant::now() < deadline, "the agent did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has said on stderr so far.
    pub fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
