//! The systemd user unit (Linux): where it lives, its text, and the
//! `systemctl --user` commands that enable, start, stop and ask about it.
//!
//! The text follows systemd.syntax(7): every value has its `%` specifiers
//! escaped (`%%`); `ExecStart=` words and `Environment=` assignments are
//! double-quoted with `\` and `"` escaped, and `ExecStart=` has `$` written
//! `$$` (systemd expands `$VAR` there, nowhere else); `WorkingDirectory=`
//! and `StandardError=append:` take the rest of the line as a path, so
//! only `%` is escaped there, and a path with leading or trailing
//! whitespace (which systemd would trim) is refused.

use std::path::{Path, PathBuf};

use super::{RenderError, ServiceSpec};

/// The unit's file name.
pub(super) const UNIT: &str = "mcp-manager.service";

/// `$XDG_CONFIG_HOME/systemd/user/mcp-manager.service`; with no (or a
/// relative, which the XDG spec says to ignore) `XDG_CONFIG_HOME`,
/// `~/.config/systemd/user/`.
pub(super) fn unit_path(user_home: &Path, xdg_config_home: Option<&Path>) -> PathBuf {
    let config = match xdg_config_home {
        Some(dir) if dir.is_absolute() => dir.to_owned(),
        _ => user_home.join(".config"),
    };
    config.join("systemd").join("user").join(UNIT)
}

/// The unit's text.
///
/// # Errors
/// [`RenderError`]: a value systemd cannot hold (a control character, a
/// path with leading or trailing whitespace).
pub(super) fn render(spec: &ServiceSpec) -> Result<String, RenderError> {
    let exec = spec
        .arguments()?
        .iter()
        .map(|word| exec_word(word))
        .collect::<Result<Vec<_>, _>>()?
        .join(" ");
    let mut environment = String::new();
    for (name, value) in spec.environment()? {
        environment.push_str(&format!(
            "Environment={}\n",
            quoted(&format!("{name}={value}"))?
        ));
    }
    let working_dir = path_value(&spec.working_dir)?;
    let log = path_value(&spec.log_file)?;
    Ok(format!(
        "\
# mcp-manager as a user service, written by `mcp-manager service install`
# (remove it with `mcp-manager service uninstall`; edits are overwritten by
# the next install).
[Unit]
Description=mcp-manager: MCP servers shared by Claude Code sessions

[Service]
Type=simple
ExecStart={exec}
# The tool's home: the same directory whoever starts the manager.
WorkingDirectory={working_dir}
# The installing shell's PATH (npx, uvx, node), the tool's home if it was
# moved, and how the manager was started.
{environment}\
# A crash or a failed start is retried; `mcp-manager shutdown` (exit 0) is
# not.
Restart=on-failure
RestartSec=5
# SIGTERM goes to the manager alone: it stops its daemons itself, and a
# crashed manager's daemons are adopted by the next one, not killed.
KillMode=process
# The manager writes manager.log itself; what it prints before its log is
# open (a bad config) and a panic are appended there too.
StandardOutput=null
StandardError=append:{log}

[Install]
WantedBy=default.target
"
    ))
}

/// One `ExecStart=` word: quoted, `$` doubled.
fn exec_word(word: &str) -> Result<String, RenderError> {
    Ok(quoted(word)?.replace('$', "$$"))
}

/// `"text"` with `\`, `"` and `%` escaped.
fn quoted(text: &str) -> Result<String, RenderError> {
    refuse_control(text)?;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// A path that takes the rest of the line: `%` escaped.
fn path_value(path: &Path) -> Result<String, RenderError> {
    let text = path
        .to_str()
        .ok_or_else(|| RenderError::NotUtf8(path.to_owned()))?;
    refuse_control(text)?;
    if text.trim() != text {
        return Err(RenderError::Whitespace(path.to_owned()));
    }
    Ok(text.replace('%', "%%"))
}

fn refuse_control(text: &str) -> Result<(), RenderError> {
    match text.chars().find(|c| c.is_control()) {
        Some(_) => Err(RenderError::Control(text.escape_debug().to_string())),
        None => Ok(()),
    }
}

/// `systemctl --user ARGS`.
pub(super) fn systemctl(args: &[&str]) -> (String, Vec<String>) {
    let mut all = vec!["--user".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    ("systemctl".to_owned(), all)
}

/// The one command that enables and starts the unit by hand.
pub(super) fn enable_command() -> String {
    format!("systemctl --user enable --now {UNIT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(exe: &str, home: &str) -> ServiceSpec {
        ServiceSpec {
            exe: PathBuf::from(exe),
            port: Some(3199),
            working_dir: PathBuf::from(home),
            log_file: Path::new(home).join("manager.log"),
            path_var: Some("/usr/bin:/opt/my tools/bin".into()),
            tool_home_var: Some(PathBuf::from(home)),
        }
    }

    /// Spaces, quotes, backslashes, `%` and `$` reach systemd as written.
    #[test]
    fn values_are_quoted_and_escaped() {
        let unit = render(&spec(
            "/opt/a b/100%/$x/mcp-manager",
            "/home/u/my \"home\"\\%d",
        ))
        .expect("renders");
        assert!(
            unit.contains("ExecStart=\"/opt/a b/100%%/$$x/mcp-manager\" \"--port\" \"3199\"\n"),
            "{unit}"
        );
        assert!(
            unit.contains("WorkingDirectory=/home/u/my \"home\"\\%%d\n"),
            "{unit}"
        );
        assert!(
            unit.contains("Environment=\"PATH=/usr/bin:/opt/my tools/bin\"\n"),
            "{unit}"
        );
        assert!(
            unit.contains(
                "Environment=\"MCP_SESSION_MANAGER_HOME=/home/u/my \\\"home\\\"\\\\%%d\"\n"
            ),
            "{unit}"
        );
        assert!(
            unit.contains("Environment=\"MCP_MANAGER_LAUNCHED_BY=service\"\n"),
            "{unit}"
        );
        assert!(
            unit.contains("StandardError=append:/home/u/my \"home\"\\%%d/manager.log\n"),
            "{unit}"
        );
        assert!(unit.contains("Restart=on-failure\n"));
        assert!(unit.contains("WantedBy=default.target\n"));
    }

    /// What systemd would misread is refused, not written.
    #[test]
    fn unwritable_values_are_refused() {
        assert!(matches!(
            render(&spec("/opt/mcp-manager", "/home/u/x\ny")),
            Err(RenderError::Control(_))
        ));
        assert!(matches!(
            render(&spec("/opt/mcp-manager", "/home/u/trailing ")),
            Err(RenderError::Whitespace(_))
        ));
        let mut bad_path = spec("/opt/mcp-manager", "/home/u");
        bad_path.path_var = Some("/bin\t:/usr/bin".into());
        assert!(matches!(render(&bad_path), Err(RenderError::Control(_))));
    }

    /// Without `--port`, the manager reads `managerPort` at each start.
    #[test]
    fn the_port_is_given_only_when_asked() {
        let mut spec = spec("/opt/mcp-manager", "/home/u");
        spec.port = None;
        spec.tool_home_var = None;
        let unit = render(&spec).expect("renders");
        assert!(unit.contains("ExecStart=\"/opt/mcp-manager\"\n"), "{unit}");
        assert!(!unit.contains("MCP_SESSION_MANAGER_HOME"), "{unit}");
    }

    #[test]
    fn the_unit_lives_under_xdg_config_home() {
        let home = Path::new("/home/u");
        assert_eq!(
            unit_path(home, None),
            Path::new("/home/u/.config/systemd/user/mcp-manager.service")
        );
        assert_eq!(
            unit_path(home, Some(Path::new("/cfg"))),
            Path::new("/cfg/systemd/user/mcp-manager.service")
        );
        assert_eq!(
            unit_path(home, Some(Path::new("relative"))),
            Path::new("/home/u/.config/systemd/user/mcp-manager.service")
        );
    }
}
