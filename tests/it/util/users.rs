//! A throwaway unprivileged user for the multi-user tests: created with
//! `useradd --system`, removed with `userdel` when dropped (also when the
//! test fails). Only root can make one; [`ThrowawayUser::create`] says why
//! it cannot, and the test skips.

use std::process::{Command, Output};

/// A system user that exists for one test.
pub struct ThrowawayUser {
    pub name: String,
}

impl ThrowawayUser {
    /// Creates `mcp-test-TAG-PID`; `Err` says why not (not root, no
    /// `useradd`), for the test to print and skip.
    pub fn create(tag: &str) -> Result<ThrowawayUser, String> {
        if mcp_session_manager::process::socket::current_uid() != Some(0) {
            return Err("not root: cannot create a throwaway user".into());
        }
        let name = format!("mcp-test-{tag}-{}", std::process::id());
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .output()
            .map_err(|e| format!("no useradd ({e})"))?;
        if !made.status.success() {
            return Err(format!(
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&made.stderr).trim()
            ));
        }
        Ok(ThrowawayUser { name })
    }

    /// Runs `program ARGS` as this user (`runuser -u`), bounded by the
    /// program's own timeouts; its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("runuser")
            .args(["-u", &self.name, "--", program])
            .args(args)
            .output()
            .expect("run a command as the throwaway user")
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
