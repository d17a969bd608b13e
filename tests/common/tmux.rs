//! A private tmux server running tokdeck in a real terminal: keys in, screen out.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::Env;

/// A private tmux server, killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(env: &Env, width: u16, height: u16, script: &str) -> Self {
        let socket = format!("tokdeck-e2e-{}-{}", std::process::id(), rand_suffix());
        let home = env.home();
        let mut cmd = super::tool("tmux");
        cmd.args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()]);
        for (k, v) in [
            ("HOME", home.display().to_string()),
            ("XDG_CONFIG_HOME", home.join("config").display().to_string()),
            ("XDG_DATA_HOME", home.join("data").display().to_string()),
            ("XDG_STATE_HOME", home.join("state").display().to_string()),
        ] {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        // The home's variables too, but no secret on tmux's command line: a test that needs
        // the OpenBao token in the terminal puts it in ~/.vault-token.
        for (k, v) in env.vars.iter().filter(|(k, _)| k != "BAO_TOKEN") {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg(script);
        // Let the app's OSC 52 copies land in tmux's paste buffer, where the test can read them.
        cmd.args([";", "set-option", "-g", "set-clipboard", "on"]);
        let out = cmd
            .output()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { socket }
    }

    pub fn screen(&self) -> String {
        let out = super::tool("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Appends every byte the program writes to the terminal to `file`, from now on.
    pub fn pipe_to(&self, file: &std::path::Path) {
        let out = super::tool("tmux")
            .args(["-L", &self.socket, "pipe-pane", "-o"])
            .arg(format!("cat >> {}", file.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pipe-pane: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// tmux's newest paste buffer.
    pub fn buffer(&self) -> String {
        let out = super::tool("tmux")
            .args(["-L", &self.socket, "show-buffer"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn resize(&self, width: u16, height: u16) {
        let status = super::tool("tmux")
            .args(["-L", &self.socket, "resize-window"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn keys(&self, keys: &[&str]) {
        let status = super::tool("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until the screen satisfies `pred`, returning it; panics with the screen after 15 s.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The server may be gone already (its only program exited); that is fine, and quiet.
        let _ = super::tool("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish() % 1_000_000
}
