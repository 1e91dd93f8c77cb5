//! The launchd agent (macOS): where its plist lives, its text, and the
//! `launchctl` commands that load, unload and ask about it in the user's
//! GUI domain (`gui/UID`).
//!
//! The plist is written by hand (no plist crate): a fixed set of keys, every
//! string XML-escaped; a control character (which XML 1.0 cannot hold) is
//! refused.

use std::path::{Path, PathBuf};

use super::{RenderError, ServiceSpec};

/// The agent's label (reverse DNS of the project's home,
/// github.com/mcp-session-manager), also its plist's file name.
pub(super) const LABEL: &str = "com.github.mcp-session-manager.mcp-manager";

/// `~/Library/LaunchAgents/LABEL.plist`.
pub(super) fn plist_path(user_home: &Path) -> PathBuf {
    user_home
        .join("Library")
        .join("LaunchAgents")
        .join(format!("{LABEL}.plist"))
}

/// The plist's text.
///
/// # Errors
/// [`RenderError`]: a value that is not UTF-8 or holds a control character.
pub(super) fn render(spec: &ServiceSpec) -> Result<String, RenderError> {
    let mut arguments = String::new();
    for word in spec.arguments()? {
        arguments.push_str(&format!("        <string>{}</string>\n", escaped(&word)?));
    }
    let mut environment = String::new();
    for (name, value) in spec.environment()? {
        environment.push_str(&format!(
            "        <key>{}</key>\n        <string>{}</string>\n",
            escaped(name)?,
            escaped(&value)?
        ));
    }
    let working_dir = escaped(path_text(&spec.working_dir)?)?;
    let log = escaped(path_text(&spec.log_file)?)?;
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- mcp-manager as a user agent, written by `mcp-manager service install`
     (remove it with `mcp-manager service uninstall`). -->
<plist version="1.0">
<dict>
    <key>Label</key>
    <string>{LABEL}</string>
    <key>ProgramArguments</key>
    <array>
{arguments}    </array>
    <key>WorkingDirectory</key>
    <string>{working_dir}</string>
    <key>EnvironmentVariables</key>
    <dict>
{environment}    </dict>
    <key>RunAtLoad</key>
    <true/>
    <key>KeepAlive</key>
    <dict>
        <key>SuccessfulExit</key>
        <false/>
    </dict>
    <key>ThrottleInterval</key>
    <integer>5</integer>
    <key>StandardOutPath</key>
    <string>/dev/null</string>
    <key>StandardErrorPath</key>
    <string>{log}</string>
</dict>
</plist>
"#
    ))
}

fn path_text(path: &Path) -> Result<&str, RenderError> {
    path.to_str()
        .ok_or_else(|| RenderError::NotUtf8(path.to_owned()))
}

/// `text` with `&`, `<`, `>`, `"` and `'` as entities.
fn escaped(text: &str) -> Result<String, RenderError> {
    if text.chars().any(char::is_control) {
        return Err(RenderError::Control(text.escape_debug().to_string()));
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The user's GUI domain, `gui/UID`.
pub(super) fn domain(uid: u32) -> String {
    format!("gui/{uid}")
}

/// The agent in that domain, `gui/UID/LABEL`.
pub(super) fn target(uid: u32) -> String {
    format!("gui/{uid}/{LABEL}")
}

/// The one command that loads (and so starts) the agent by hand.
pub(super) fn enable_command(uid: u32, plist: &Path) -> String {
    format!(
        "launchctl bootstrap {} {}",
        domain(uid),
        super::shell_quoted(&plist.to_string_lossy())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            exe: PathBuf::from("/Users/u/My Apps/<bin> & 'co'/mcp-manager"),
            port: Some(3199),
            working_dir: PathBuf::from("/Users/u/.mcp \"home\""),
            log_file: PathBuf::from("/Users/u/.mcp \"home\"/manager.log"),
            path_var: Some("/opt/homebrew/bin:/usr/bin".into()),
            tool_home_var: None,
        }
    }

    /// Markup characters in paths become entities.
    #[test]
    fn strings_are_xml_escaped() {
        let plist = render(&spec()).expect("renders");
        assert!(
            plist.contains(
                "<string>/Users/u/My Apps/&lt;bin&gt; &amp; &apos;co&apos;/mcp-manager</string>"
            ),
            "{plist}"
        );
        assert!(
            plist.contains("<string>/Users/u/.mcp &quot;home&quot;</string>"),
            "{plist}"
        );
        assert!(
            plist.contains("<key>MCP_MANAGER_LAUNCHED_BY</key>\n        <string>service</string>")
        );
        assert!(plist.contains(&format!("<string>{LABEL}</string>")));
        let mut bad = spec();
        bad.path_var = Some("/bin\u{1}".into());
        assert!(matches!(render(&bad), Err(RenderError::Control(_))));
    }

    /// The plist is one that a real plist parser reads back to the same
    /// values: `plutil -lint` where it exists (macOS), python3's
    /// `plistlib` elsewhere (skipped, saying so, without either).
    #[test]
    fn the_plist_parses_back_to_its_values() {
        let plist = render(&spec()).expect("renders");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.plist");
        std::fs::write(&file, &plist).expect("write");
        if let Ok(out) = std::process::Command::new("plutil")
            .arg("-lint")
            .arg(&file)
            .output()
        {
            assert!(out.status.success(), "plutil -lint: {out:?}\n{plist}");
        }
        let script = "import json, plistlib, sys\n\
                      with open(sys.argv[1], 'rb') as f: d = plistlib.load(f)\n\
                      print(json.dumps(d))";
        let Ok(out) = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&file)
            .output()
        else {
            eprintln!("skipped: no python3 to parse the plist with");
            return;
        };
        assert!(out.status.success(), "plistlib: {out:?}\n{plist}");
        let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(parsed["Label"], LABEL);
        assert_eq!(
            parsed["ProgramArguments"],
            serde_json::json!([
                "/Users/u/My Apps/<bin> & 'co'/mcp-manager",
                "--port",
                "3199"
            ])
        );
        assert_eq!(parsed["WorkingDirectory"], "/Users/u/.mcp \"home\"");
        assert_eq!(
            parsed["EnvironmentVariables"],
            serde_json::json!({
                "PATH": "/opt/homebrew/bin:/usr/bin",
                "MCP_MANAGER_LAUNCHED_BY": "service"
            })
        );
        assert_eq!(parsed["KeepAlive"]["SuccessfulExit"], false);
        assert_eq!(parsed["RunAtLoad"], true);
        assert_eq!(
            parsed["StandardErrorPath"],
            "/Users/u/.mcp \"home\"/manager.log"
        );
    }

    #[test]
    fn the_plist_lives_in_launch_agents() {
        assert_eq!(
            plist_path(Path::new("/Users/u")),
            Path::new(
                "/Users/u/Library/LaunchAgents/com.github.mcp-session-manager.mcp-manager.plist"
            )
        );
        assert_eq!(
            enable_command(501, Path::new("/Users/u/L A/x.plist")),
            "launchctl bootstrap gui/501 '/Users/u/L A/x.plist'"
        );
    }
}
