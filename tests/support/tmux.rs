//! A program in a real terminal: tmux runs it on a private server, tests
//! type with send-keys and read the screen with capture-pane.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Whether tmux can be run here.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Run `argv` in `cwd` in a new 160x50 terminal; when it ends the pane
    /// shows `EXIT=<status>` and stays.
    pub fn start(dir: &Path, cwd: &Path, argv: &[&str]) -> Tmux {
        let socket = dir.join("tmux.sock");
        let quoted: Vec<String> = argv
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let script = format!("{}; echo EXIT=$?; sleep 600", quoted.join(" "));
        let t = Tmux { socket };
        t.tmux(&[
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "50",
            "-s",
            "t",
            "-c",
            cwd.to_str().unwrap(),
            "sh",
            "-c",
            &script,
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Press keys (tmux key names: Enter, Down, Space, BSpace, or text),
    /// one at a time as a person would: a burst of escape sequences in one
    /// read is not what a terminal program expects.
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "t", k]);
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Type text literally.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// Wait until the screen shows `needle`; returns the screen.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(needle) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {needle:?}; it shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for `needle`, then press `keys`.
    pub fn answer(&self, needle: &str, keys: &[&str]) -> String {
        let s = self.wait_for(needle);
        // The prompt draws its line after the question: let it settle.
        std::thread::sleep(Duration::from_millis(100));
        self.keys(keys);
        s
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
