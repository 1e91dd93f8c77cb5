//! Check 7: the `mcp-proxy` beside this binary is the same version
//! (`cargo install` puts both there; a stale one speaks an older protocol
//! to the manager).

use std::path::Path;
use std::time::Duration;

use super::{Check, VERSION};

/// How long `mcp-proxy --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn check_proxy_version(proxy: &Path) -> Check {
    let name = "mcp-proxy version";
    let fix = "`cargo install --path .` in the source tree (it installs both binaries), or reinstall mcp-proxy and mcp-manager from the same release";
    let output = match run_version(proxy).await {
        Ok(output) => output,
        Err(detail) => return Check::problem(name, detail, fix),
    };
    let line = output.lines().next().unwrap_or_default().trim();
    match line.split_whitespace().last() {
        Some(version) if version == VERSION => Check::ok(
            name,
            format!("{}: {VERSION}, same as mcp-manager", proxy.display()),
        ),
        _ => Check::problem(
            name,
            format!(
                "{} says {line:?}; this mcp-manager is {VERSION}",
                proxy.display()
            ),
            fix,
        ),
    }
}

/// `proxy --version`'s output, within [`VERSION_TIMEOUT`].
async fn run_version(proxy: &Path) -> Result<String, String> {
    let shown = proxy.display();
    let mut busy_retries = 5;
    loop {
        let mut command = tokio::process::Command::new(proxy);
        command
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(VERSION_TIMEOUT, command.output()).await {
            Err(_) => {
                return Err(format!(
                    "{shown} did not answer --version within {} s",
                    VERSION_TIMEOUT.as_secs()
                ));
            }
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("no mcp-proxy at {shown}"));
            }
            // A binary being replaced (`cargo install`) is busy for a moment.
            Ok(Err(error))
                if error.kind() == std::io::ErrorKind::ExecutableFileBusy && busy_retries > 0 =>
            {
                busy_retries -= 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(error)) => return Err(format!("cannot run {shown}: {error}")),
            Ok(Ok(output)) if !output.status.success() => {
                return Err(format!("{shown} --version failed ({})", output.status));
            }
            Ok(Ok(output)) => return Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        }
    }
}
