//! The import, end to end on temporary homes: what is written, what is
//! kept byte for byte, what is refused, and the undo.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use serde_json::{Value, json};

use super::apply::write_changes;
use super::undo::{UndoOptions, undo};
use super::*;
use crate::claude::files::desktop_config;
use crate::claude::json_text::json_string;
use crate::claude::projects::absolute;

/// A user home, a tool home inside it and an installed proxy.
struct Fixture {
    dir: tempfile::TempDir,
    user_home: PathBuf,
    home: PathBuf,
    proxy: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let user_home = dir.path().join("me");
    let home = user_home.join(".mcp-session-manager");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&user_home).expect("user home");
    std::fs::create_dir_all(&bin).expect("bin");
    let proxy = bin.join("mcp-proxy");
    std::fs::write(&proxy, "").expect("proxy");
    Fixture {
        dir,
        user_home,
        home,
        proxy,
    }
}

impl Fixture {
    fn options(&self, source: Source) -> ImportOptions {
        ImportOptions {
            source,
            user_home: self.user_home.clone(),
            home: self.home.clone(),
            proxy: self.proxy.clone(),
            scopes: BTreeMap::new(),
            dry_run: false,
            remote: false,
            rewrite_mcp_json: false,
            verify: false,
        }
    }

    fn undo(&self, all: bool, dry_run: bool) -> UndoOptions {
        UndoOptions {
            home: self.home.clone(),
            all,
            dry_run,
        }
    }

    fn claude_code(&self) -> ImportOptions {
        self.options(Source::ClaudeCode { project: None })
    }

    fn claude_json(&self) -> PathBuf {
        self.user_home.join(".claude.json")
    }

    fn config(&self) -> PathBuf {
        crate::paths::config_file(&self.home)
    }

    fn write(&self, path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(path, text).expect("write");
    }

    /// Every file under the temporary directory, with its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), std::fs::read(&path).expect("read"));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read")
}

const CLAUDE_JSON: &str = r#"{
  "numStartups": 5,
  "mcpServers": {
"github": {
  "type": "stdio",
  "command": "npx",
  "args": [
    "-y",
    "@modelcontextprotocol/server-github"
  ],
  "env": {
    "GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}",
    "PLAIN_SECRET": "s3cr3t-value"
  }
},
"linear": {
  "type": "sse",
  "url": "https://mcp.linear.app/sse",
  "headers": {
    "Authorization": "Bearer ${LINEAR_TOKEN}",
    "X-Api-Key": "h3ader-s3cret"
  }
}
  },
  "tipsHistory": {}
}
"#;

/// A stdio entry becomes a hosted one with its env as written (`${VAR}`
/// kept, and noted); its source entry runs the proxy; a remote one stays
/// as it is, with the reason; the config parses; no secret is shown.
#[test]
fn claude_code_servers_move_to_the_config() {
    let f = fixture();
    f.write(&f.claude_json(), CLAUDE_JSON);
    let report = import(&f.claude_code()).expect("import");

    let config_text = read_text(&f.config());
    let config = Config::parse(&f.config(), config_text.as_bytes()).expect("config parses");
    assert!(config_text.contains(r#""GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}""#));
    let written = read_json(&f.config());
    let github = &written["mcpServers"]["github"];
    assert_eq!(github["command"], "npx");
    assert_eq!(
        github["args"],
        json!(["-y", "@modelcontextprotocol/server-github"])
    );
    assert_eq!(github["scope"], "shared");
    let port = github["port"].as_u64().expect("a port");
    assert!(PORTS.contains(&u16::try_from(port).expect("u16")));
    assert_eq!(
        config.servers["github"].transport,
        crate::config::TransportKind::Stdio
    );
    assert!(written["mcpServers"].get("linear").is_none(), "{written}");

    let source = read_json(&f.claude_json());
    let proxy = f.proxy.to_string_lossy();
    assert_eq!(
        source["mcpServers"]["github"],
        json!({"type": "stdio", "command": proxy, "args": ["--target", "github"]})
    );
    let linear = &CLAUDE_JSON[CLAUDE_JSON.find("\"linear\"").expect("linear")..];
    let linear = &linear[..linear.find("\n}").expect("end") + 2];
    assert!(read_text(&f.claude_json()).contains(linear));
    assert_eq!(source["numStartups"], 5);

    assert!(matches!(
        report.servers[0].outcome,
        Outcome::Hosted {
            scope: Scope::Shared,
            ..
        }
    ));
    assert_eq!(
        report.servers[1].outcome,
        Outcome::LeftWithClaude {
            url: "https://mcp.linear.app/sse".into(),
            reason: remote::KEPT_BY_DEFAULT.into(),
        }
    );
    assert!(
        report.notes.iter().any(|n| n.starts_with("github:")
            && n.contains("${GITHUB_TOKEN}")
            && n.contains("manager's value")),
        "{:?}",
        report.notes
    );
    assert_eq!(report.files.len(), 2);
    assert_eq!(report.files[0].path, f.config());
    assert!(report.files[0].created);
    assert!(report.files[1].backup.is_some());
    assert!(
        report.notes.iter().any(|n| n.contains("built-in")),
        "{:?}",
        report.notes
    );
    let shown = format!(
        "{report}{}",
        serde_json::to_string(&report).expect("serialize")
    );
    for secret in [
        "s3cr3t",
        "h3ader",
        "Bearer",
        "LINEAR_TOKEN",
        "server-github",
    ] {
        assert!(!shown.contains(secret), "{secret} shown in {shown}");
    }
    assert!(
        shown.contains("github") && shown.contains("linear"),
        "{shown}"
    );
}

/// Only the entry's bytes change: keys before and after, nested
/// objects, unicode, odd spacing and CRLF stay byte for byte, and an
/// entry on one line is replaced by one on one line.
#[test]
fn every_other_byte_of_the_source_stays() {
    let f = fixture();
    let before = "{\n\t\"zeta\" : {\"nested\": {\"deep\": [1, 2, {\"x\": \"é ☃ \\u00e9\"}]}},\r\n  \"mcpServers\":{ \"keep\" :{\"command\":\"/opt/mcp-proxy\",\"args\":[\"--target\",\"keep\"]},\n      \"srv\"   :   ";
    let entry =
        "{ \"command\" : \"node\", \"args\": [\"s.js\", \"ü\"], \"env\": {\"K\": \"${V}\"} }";
    let after = "  ,\"other\": {\"command\": \"C:\\\\bin\\\\MCP-PROXY.EXE\"}},\n\"alpha\": 1e3, \"emoji\": \"🦀\",   \"arr\":[ ]\n}\n";
    f.write(&f.claude_json(), &format!("{before}{entry}{after}"));
    let report = import(&f.claude_code()).expect("import");
    let text = read_text(&f.claude_json());
    assert!(text.starts_with(before), "{text}");
    assert!(text.ends_with(after), "{text}");
    let middle = &text[before.len()..text.len() - after.len()];
    assert!(!middle.contains('\n'), "{middle}");
    assert_eq!(
        serde_json::from_str::<Value>(middle).expect("entry"),
        json!({"command": f.proxy.to_string_lossy(), "args": ["--target", "srv"]})
    );
    let outcomes: Vec<&Outcome> = report.servers.iter().map(|s| &s.outcome).collect();
    assert!(matches!(outcomes[0], Outcome::AlreadyImported { target: Some(t) } if t == "keep"));
    assert!(matches!(outcomes[1], Outcome::Hosted { .. }));
    assert!(matches!(
        outcomes[2],
        Outcome::AlreadyImported { target: None }
    ));
    let config = read_json(&f.config());
    assert_eq!(config["mcpServers"]["srv"]["args"], json!(["s.js", "ü"]));
    assert_eq!(config["mcpServers"]["srv"]["env"], json!({"K": "${V}"}));
}

/// A multi-line entry is replaced by one indented like its neighbours.
#[test]
fn a_replaced_entry_is_indented_like_the_file() {
    let f = fixture();
    f.write(
        &f.claude_json(),
        "{\n    \"mcpServers\": {\n        \"a\": {\n            \"command\": \"x\"\n        }\n    }\n}\n",
    );
    import(&f.claude_code()).expect("import");
    let proxy = json_string(&f.proxy.to_string_lossy());
    assert_eq!(
        read_text(&f.claude_json()),
        format!(
            "{{\n    \"mcpServers\": {{\n        \"a\": {{\n            \"command\": {proxy},\n            \"args\": [\n                \"--target\",\n                \"a\"\n            ]\n        }}\n    }}\n}}\n"
        )
    );
}

/// A dry run reads and checks everything, reports, and writes nothing.
#[test]
fn a_dry_run_writes_nothing() {
    let f = fixture();
    f.write(&f.claude_json(), CLAUDE_JSON);
    let before = f.snapshot();
    let mut options = f.claude_code();
    options.dry_run = true;
    let report = import(&options).expect("dry run");
    assert_eq!(f.snapshot(), before);
    assert!(!f.home.exists());
    assert_eq!(report.files.len(), 2);
    assert!(report.files.iter().all(|c| c.backup.is_none()));
    let shown = report.to_string();
    assert!(
        shown.contains("would write") && shown.contains("dry run"),
        "{shown}"
    );
}

/// Running the import again changes nothing: every entry already runs
/// the proxy.
#[test]
fn a_second_run_is_a_no_op() {
    let f = fixture();
    f.write(&f.claude_json(), CLAUDE_JSON);
    import(&f.claude_code()).expect("first");
    let before = f.snapshot();
    let report = import(&f.claude_code()).expect("second");
    assert_eq!(f.snapshot(), before);
    assert!(report.files.is_empty());
    assert!(report.servers.iter().all(|s| matches!(
        s.outcome,
        Outcome::AlreadyImported { .. } | Outcome::LeftWithClaude { .. }
    )));
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert!(report.to_string().contains("already imported"));
}

/// Undo puts the source and an existing config.json back byte for byte;
/// a config.json the import created is removed; no file is left beside
/// them (the journal is under the tool's home).
#[test]
fn undo_restores_every_file_byte_for_byte() {
    let f = fixture();
    f.write(&f.claude_json(), CLAUDE_JSON);
    let original_config = "{\"managerPort\": 3199,\n \"mcpServers\": {\"fs\": {\"command\": \"fs-server\", \"port\": 3110}}}";
    f.write(&f.config(), original_config);
    let imported = import(&f.claude_code()).expect("import");
    assert_ne!(read_text(&f.claude_json()), CLAUDE_JSON);
    assert!(imported.journal.is_some());
    let beside: Vec<_> = std::fs::read_dir(&f.user_home)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".claude.json."))
        .collect();
    assert!(
        beside.is_empty(),
        "nothing beside ~/.claude.json: {beside:?}"
    );

    let before = f.snapshot();
    let planned = undo(&f.undo(false, true)).expect("dry undo");
    assert_eq!(f.snapshot(), before);
    assert_eq!(planned.written, vec![f.claude_json(), f.config()]);

    let report = undo(&f.undo(false, false)).expect("undo");
    assert_eq!(read_text(&f.claude_json()), CLAUDE_JSON);
    assert_eq!(read_text(&f.config()), original_config);
    assert_eq!(report.written, vec![f.claude_json(), f.config()]);
    assert!(
        report.to_string().contains("put back as it was"),
        "{report}"
    );
    // A second undo has nothing left to revert.
    let again = undo(&f.undo(false, false)).expect("undo");
    assert!(again.to_string().contains("nothing to undo"), "{again}");

    // Without a config.json before, undo removes the one import wrote.
    let g = fixture();
    g.write(&g.claude_json(), CLAUDE_JSON);
    import(&g.claude_code()).expect("import");
    let report = undo(&g.undo(false, false)).expect("undo");
    assert_eq!(read_text(&g.claude_json()), CLAUDE_JSON);
    assert!(!g.config().exists());
    assert_eq!(report.removed, vec![g.config()]);
    // And nothing to undo in a fresh home.
    let h = fixture();
    let report = undo(&h.undo(true, false)).expect("undo");
    assert!(report.written.is_empty() && report.removed.is_empty());
    assert!(report.to_string().contains("nothing to undo"));
}

/// `import`, `import --project`, a server added by hand and Claude Code
/// rewriting the file, then `--undo --all`: every original entry is back,
/// the later additions stay; `--undo` alone reverts only the newest.
#[test]
fn undo_all_goes_back_to_the_start_and_keeps_later_changes() {
    let f = fixture();
    let project = f.dir.path().join("web");
    std::fs::create_dir_all(&project).expect("project");
    let key = crate::claude::projects::absolute(&project)
        .to_string_lossy()
        .into_owned();
    let claude = serde_json::json!({
        "numStartups": 1,
        "mcpServers": {"mem": {"command": "mem-server"}},
        "projects": {key.clone(): {"allowedTools": [], "enabledMcpjsonServers": ["db"]}}
    });
    let original = serde_json::to_string_pretty(&claude).expect("json");
    f.write(&f.claude_json(), &original);
    let mcp_json = "{\"mcpServers\": {\"db\": {\"command\": \"db-server\"}}}\n";
    f.write(&project.join(".mcp.json"), mcp_json);
    import(&f.claude_code()).expect("import");
    let report = import(&f.options(Source::ClaudeCode {
        project: Some(project.clone()),
    }))
    .expect("import --project");
    assert_eq!(
        read_text(&project.join(".mcp.json")),
        mcp_json,
        ".mcp.json untouched"
    );
    assert_eq!(
        std::fs::read_dir(&project).expect("list").count(),
        1,
        "nothing new in the project"
    );
    let db = report.servers.iter().find(|s| s.name == "db").expect("db");
    assert_eq!(db.target.as_deref(), Some("web.db"), "{report}");
    let now = read_json(&f.claude_json());
    let local = &now["projects"][&key]["mcpServers"]["db"];
    assert_eq!(
        local["args"],
        serde_json::json!(["--target", "web.db"]),
        "{now}"
    );
    assert!(read_json(&f.config())["mcpServers"]["web.db"].is_object());
    // Again: nothing to change, the override is ours.
    let again = import(&f.options(Source::ClaudeCode {
        project: Some(project.clone()),
    }))
    .expect("again");
    assert!(again.files.is_empty(), "{again}");
    let db = again
        .servers
        .iter()
        .find(|s| s.file.ends_with(".mcp.json"))
        .expect("db");
    assert!(
        matches!(db.outcome, Outcome::AlreadyImported { .. }),
        "{again}"
    );

    // Later: a server added by hand, Claude Code adds a key.
    let mut later = read_json(&f.claude_json());
    later["mcpServers"]["later"] = serde_json::json!({"command": "later-server"});
    later["machineID"] = serde_json::json!("m-1");
    f.write(
        &f.claude_json(),
        &serde_json::to_string_pretty(&later).expect("json"),
    );

    // --undo: only the project import.
    undo(&f.undo(false, false)).expect("undo");
    let after = read_json(&f.claude_json());
    assert!(
        after["projects"][&key].get("mcpServers").is_none(),
        "{after}"
    );
    assert!(crate::claude::entries::is_proxy(
        after["mcpServers"]["mem"]["command"]
            .as_str()
            .unwrap_or_default()
    ));
    // --undo --all: the rest.
    undo(&f.undo(true, false)).expect("undo --all");
    let mut back = read_json(&f.claude_json());
    assert_eq!(back["mcpServers"]["later"]["command"], "later-server");
    assert_eq!(back["machineID"], "m-1");
    back["mcpServers"]
        .as_object_mut()
        .expect("servers")
        .remove("later");
    back.as_object_mut().expect("top").remove("machineID");
    assert_eq!(back, claude, "every original entry back");
    assert!(!f.config().exists());
}

/// An entry changed since the import is left alone and reported; the
/// others are reverted.
#[test]
fn undo_leaves_an_entry_changed_since() {
    let f = fixture();
    f.write(&f.claude_json(), CLAUDE_JSON);
    import(&f.claude_code()).expect("import");
    let mut now = read_json(&f.claude_json());
    now["mcpServers"]["github"] = serde_json::json!({"command": "my-own-github"});
    f.write(
        &f.claude_json(),
        &serde_json::to_string_pretty(&now).expect("json"),
    );
    let report = undo(&f.undo(false, false)).expect("undo");
    assert!(
        report.to_string().contains("left alone: changed since"),
        "{report}"
    );
    assert_eq!(
        read_json(&f.claude_json())["mcpServers"]["github"]["command"],
        "my-own-github"
    );
}

/// A project server the user disabled, or never approved, in Claude Code
/// gets no override; `--from DIR/.mcp.json` needs `--rewrite-mcp-json`,
/// which writes a portable entry.
#[test]
fn project_servers_need_approval_and_the_file_a_flag() {
    let f = fixture();
    let project = f.dir.path().join("api");
    std::fs::create_dir_all(project.join(".claude")).expect("project");
    f.write(&f.claude_json(), "{}");
    f.write(
        &project.join(".mcp.json"),
        r#"{"mcpServers": {"on": {"command": "a"}, "off": {"command": "b"}, "new": {"command": "c"}}}"#,
    );
    f.write(
        &project.join(".claude/settings.local.json"),
        r#"{"enabledMcpjsonServers": ["on"], "disabledMcpjsonServers": ["off"]}"#,
    );
    let report = import(&f.options(Source::ClaudeCode {
        project: Some(project.clone()),
    }))
    .expect("import");
    let outcome = |name: &str| {
        report
            .servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.outcome.clone())
            .expect("found")
    };
    assert!(matches!(outcome("on"), Outcome::Hosted { .. }), "{report}");
    assert!(
        matches!(outcome("off"), Outcome::NotApproved { .. }),
        "{report}"
    );
    assert!(
        matches!(outcome("new"), Outcome::NotApproved { .. }),
        "{report}"
    );
    assert!(
        report.to_string().contains("Conflicting scopes"),
        "{report}"
    );

    let file = project.join(".mcp.json");
    let error = import(&f.options(Source::File(file.clone()))).expect_err("needs a flag");
    assert!(
        matches!(error, ImportError::ProjectFileNeedsProject { .. }),
        "{error}"
    );
    let mut rewrite = f.options(Source::File(file.clone()));
    rewrite.rewrite_mcp_json = true;
    import(&rewrite).expect("rewrite");
    let rewritten = read_json(&file);
    assert_eq!(
        rewritten["mcpServers"]["off"]["command"], "mcp-proxy",
        "{rewritten}"
    );
}

/// A name config.json already uses for another server stops the
/// import before anything is written; the same server is reused.
#[test]
fn a_clashing_name_is_refused_and_nothing_is_written() {
    let f = fixture();
    f.write(&f.claude_json(), CLAUDE_JSON);
    f.write(
        &f.config(),
        r#"{"mcpServers": {"github": {"command": "other", "port": 3150}}}"#,
    );
    let before = f.snapshot();
    let error = import(&f.claude_code()).expect_err("clash").to_string();
    assert!(
        error.contains("\"github\"") && error.contains("rename"),
        "{error}"
    );
    assert_eq!(f.snapshot(), before);

    // The very same server: reused, only the source is rewritten.
    f.write(
        &f.config(),
        r#"{"mcpServers": {"github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"], "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}", "PLAIN_SECRET": "s3cr3t-value"}, "port": 3150, "scope": "session"}}}"#,
    );
    let report = import(&f.claude_code()).expect("import");
    assert_eq!(report.servers[0].outcome, Outcome::AlreadyInConfig);
    let config = read_json(&f.config());
    assert_eq!(config["mcpServers"]["github"]["port"], 3150);
    assert!(config["mcpServers"].get("linear").is_none());
}

/// A source that is not JSON is named with the line and column.
#[test]
fn a_source_that_is_not_json_is_named_with_its_position() {
    let f = fixture();
    f.write(&f.claude_json(), "{\n  \"mcpServers\": {,\n}");
    let before = f.snapshot();
    let error = import(&f.claude_code()).expect_err("not json");
    assert!(
        matches!(error, ImportError::NotJson { line: 2, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(".claude.json")
            && message.contains("line 2")
            && message.contains("column"),
        "{message}"
    );
    assert_eq!(f.snapshot(), before);
}

/// An entry with neither command nor url is named, with the fix.
#[test]
fn an_entry_without_command_or_url_is_refused() {
    let f = fixture();
    f.write(
        &f.claude_json(),
        r#"{"mcpServers": {"ok": {"command": "x"}, "broken": {"args": ["y"]}}}"#,
    );
    let before = f.snapshot();
    let error = import(&f.claude_code()).expect_err("broken").to_string();
    assert!(
        error.contains("\"broken\"") && error.contains("\"command\"") && error.contains("\"url\""),
        "{error}"
    );
    assert_eq!(f.snapshot(), before);
}

/// Other bad entries: a bad name, a wrong type, an env value that is
/// not a string (whose value is never echoed).
#[test]
fn bad_entries_are_named() {
    let f = fixture();
    let error = |text: &str| {
        f.write(&f.claude_json(), text);
        import(&f.claude_code()).expect_err("bad").to_string()
    };
    let e = error(r#"{"mcpServers": {"my server": {"command": "x"}}}"#);
    assert!(e.contains("\"my server\"") && e.contains("rename"), "{e}");
    let e = error(r#"{"mcpServers": {"w": {"type": "ws", "url": "wss://x"}}}"#);
    assert!(e.contains("\"w\"") && e.contains("\"ws\""), "{e}");
    let e = error(r#"{"mcpServers": {"h": {"type": "http"}}}"#);
    assert!(e.contains("\"h\"") && e.contains("url"), "{e}");
    let e = error(r#"{"mcpServers": {"n": {"command": "x", "env": {"PIN": 123456}}}}"#);
    assert!(e.contains("env.PIN") && !e.contains("123456"), "{e}");
    let e = error(r#"{"mcpServers": []}"#);
    assert!(e.contains("mcpServers") && e.contains("object"), "{e}");
    let e = error(r#"{"mcpServers": {"s": "npx"}}"#);
    assert!(e.contains("\"s\"") && e.contains("object"), "{e}");
    assert!(!f.config().exists());
}

/// Servers of a project (its `projects` entry and its `.mcp.json`) get
/// scope `project` and the project as cwd; user-level ones `shared`;
/// `--scope` overrides.
#[test]
fn project_servers_get_the_project_scope() {
    let f = fixture();
    let project = f.dir.path().join("work").join("app");
    std::fs::create_dir_all(&project).expect("project");
    let key = absolute(&project).to_string_lossy().into_owned();
    let claude = json!({
        "mcpServers": {"user1": {"command": "u"}, "user2": {"command": "v"}},
        "projects": {
            "/somewhere/else": {"mcpServers": {"elsewhere": {"command": "e"}}},
            key.clone(): {"allowedTools": [], "enabledMcpjsonServers": ["team1"], "mcpServers": {"local1": {"command": "l", "cwd": "/srv"}}}
        }
    });
    f.write(
        &f.claude_json(),
        &serde_json::to_string_pretty(&claude).expect("json"),
    );
    f.write(
        &project.join(".mcp.json"),
        r#"{"mcpServers": {"team1": {"type": "stdio", "command": "t", "args": []}}}"#,
    );
    let mut options = f.options(Source::ClaudeCode {
        project: Some(project.clone()),
    });
    options.scopes.insert("user2".into(), Scope::Session);
    let report = import(&options).expect("import");
    let scope_of = |name: &str| {
        report
            .servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.outcome.clone())
    };
    assert!(matches!(
        scope_of("user1"),
        Some(Outcome::Hosted {
            scope: Scope::Shared,
            ..
        })
    ));
    assert!(matches!(
        scope_of("user2"),
        Some(Outcome::Hosted {
            scope: Scope::Session,
            ..
        })
    ));
    assert!(matches!(
        scope_of("local1"),
        Some(Outcome::Hosted {
            scope: Scope::Project,
            ..
        })
    ));
    assert!(matches!(
        scope_of("team1"),
        Some(Outcome::Hosted {
            scope: Scope::Project,
            ..
        })
    ));
    assert!(scope_of("elsewhere").is_none());
    let local = report
        .servers
        .iter()
        .find(|s| s.name == "local1")
        .expect("local1");
    assert_eq!(
        local.place,
        format!("projects[{}].mcpServers", json_string(&key))
    );

    assert_eq!(local.target.as_deref(), Some("app.local1"));

    let config = read_json(&f.config());
    assert_eq!(config["mcpServers"]["app.team1"]["cwd"], json!(key));
    assert_eq!(config["mcpServers"]["app.local1"]["cwd"], "/srv");
    assert!(config["mcpServers"]["user1"].get("cwd").is_none());
    Config::parse(&f.config(), &std::fs::read(f.config()).expect("read")).expect("parses");
    let ports: BTreeSet<Option<u64>> = config["mcpServers"]
        .as_object()
        .expect("servers")
        .values()
        .map(|s| s["port"].as_u64())
        .collect();
    assert_eq!(ports.len(), 4);

    let claude = read_json(&f.claude_json());
    assert_eq!(
        claude["projects"][&key]["mcpServers"]["local1"]["args"],
        json!(["--target", "app.local1"])
    );
    // The committed .mcp.json stays; a local entry overrides its server.
    assert_eq!(
        claude["projects"][&key]["mcpServers"]["team1"],
        json!({"type": "stdio", "command": f.proxy.to_string_lossy(), "args": ["--target", "app.team1"]})
    );
    assert_eq!(
        claude["projects"]["/somewhere/else"]["mcpServers"]["elsewhere"]["command"],
        "e"
    );
    let team = read_json(&project.join(".mcp.json"));
    assert_eq!(team["mcpServers"]["team1"]["command"], "t");

    // A name --scope does not know is refused.
    options.scopes.insert("nope".into(), Scope::Shared);
    let error = import(&options).expect_err("unknown").to_string();
    assert!(error.contains("nope") && error.contains("user1"), "{error}");
}

/// An existing config.json keeps its bytes, keys and ports; new
/// entries get ports nobody uses.
#[test]
fn an_existing_config_keeps_its_keys_and_ports() {
    let f = fixture();
    let original = "{\n  \"managerPort\": 3199,\n  \"healthCheckInterval\": 5,\n  \"mcpServers\": {\n    \"fs\": {\n      \"command\": \"fs-server\",\n      \"port\": 3110\n    }\n  }\n}\n";
    f.write(&f.config(), original);
    f.write(
        &f.claude_json(),
        r#"{"mcpServers": {"a": {"command": "a"}, "b": {"url": "http://example.com/mcp", "headers": {"X-Key": "k"}}}}"#,
    );
    // Plain http to another host: moved under --remote, never probed
    // (its headers are not sent in clear).
    let mut options = f.claude_code();
    options.remote = true;
    let report = import(&options).expect("import");
    assert!(
        report.notes.iter().any(|n| n.starts_with("b: not checked")),
        "{:?}",
        report.notes
    );
    let text = read_text(&f.config());
    let cut = original.find("\n    }\n  }").expect("end of fs") + "\n    }".len();
    assert!(text.starts_with(&original[..cut]), "{text}");
    assert!(text.ends_with(&original[cut..]), "{text}");
    let config = Config::parse(&f.config(), text.as_bytes()).expect("parses");
    assert_eq!(
        config.health_check_interval,
        std::time::Duration::from_secs(5)
    );
    assert_ne!(config.servers["a"].port, Some(3110));
    assert!(config.servers["b"].url.is_some());
    assert!(text.contains("\"allowHttp\": true"), "{text}");
    assert!(report.notes.iter().any(|n| n.contains("allowHttp")));
    assert!(!report.notes.iter().any(|n| n.contains("built-in")));
}

/// A config.json without `mcpServers`, or with an empty one, gets one.
#[test]
fn servers_are_added_to_an_empty_config() {
    for original in ["{}", "{\"managerPort\": 4000}", "{\"mcpServers\": {}}\n"] {
        let f = fixture();
        f.write(&f.config(), original);
        f.write(
            &f.claude_json(),
            r#"{"mcpServers": {"a": {"command": "a"}}}"#,
        );
        import(&f.claude_code()).expect("import");
        let text = read_text(&f.config());
        let config = Config::parse(&f.config(), text.as_bytes()).expect("parses");
        assert!(config.servers.contains_key("a"), "{text}");
    }
}

/// A port something listens on is not given out.
#[test]
fn a_busy_port_is_skipped() {
    let f = fixture();
    let Some(held) = PORTS
        .clone()
        .find_map(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok())
    else {
        return;
    };
    let held_port = held.local_addr().expect("addr").port();
    f.write(
        &f.claude_json(),
        r#"{"mcpServers": {"a": {"command": "a"}}}"#,
    );
    let report = import(&f.claude_code()).expect("import");
    match report.servers[0].outcome {
        Outcome::Hosted { port, .. } => assert_ne!(port, held_port),
        ref other => panic!("{other:?}"),
    }
}

/// The same name at the user level and in two projects: three servers,
/// each with its own config.json name, each keeping its Claude-side name.
#[test]
fn a_name_is_per_project() {
    let f = fixture();
    let web = f.dir.path().join("web");
    let api = f.dir.path().join("api");
    let key = |dir: &Path| absolute(dir).to_string_lossy().into_owned();
    let claude = json!({
        "mcpServers": {"db": {"command": "user-db"}},
        "projects": {
            key(&web): {"enabledMcpjsonServers": ["db"]},
            key(&api): {"mcpServers": {"db": {"command": "api-db"}}}
        }
    });
    f.write(
        &f.claude_json(),
        &serde_json::to_string_pretty(&claude).expect("json"),
    );
    f.write(
        &web.join(".mcp.json"),
        r#"{"mcpServers": {"db": {"command": "web-db"}}}"#,
    );
    std::fs::create_dir_all(&api).expect("api");
    for dir in [&web, &api] {
        import(&f.options(Source::ClaudeCode {
            project: Some(dir.clone()),
        }))
        .expect("import");
    }
    let config = read_json(&f.config());
    let servers = config["mcpServers"].as_object().expect("servers");
    let names: BTreeSet<&str> = servers.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["db", "web.db", "api.db"]),
        "{config}"
    );
    assert_eq!(servers["web.db"]["command"], "web-db");
    assert_eq!(servers["api.db"]["command"], "api-db");
    let now = read_json(&f.claude_json());
    for (dir, target) in [(&web, "web.db"), (&api, "api.db")] {
        assert_eq!(
            now["projects"][key(dir)]["mcpServers"]["db"]["args"],
            json!(["--target", target])
        );
    }
    assert_eq!(now["mcpServers"]["db"]["args"], json!(["--target", "db"]));
}

/// Claude Desktop's file and any named file are read; a named file must
/// exist and have `mcpServers`; the tool's own config is refused.
#[test]
fn desktop_and_named_files() {
    let f = fixture();
    let desktop = desktop_config(&f.user_home);
    f.write(
        &desktop,
        r#"{"mcpServers": {"d": {"command": "d"}}, "globalShortcut": "Ctrl+Space"}"#,
    );
    let report = import(&f.options(Source::ClaudeDesktop)).expect("desktop");
    assert_eq!(report.sources, vec![desktop.clone()]);
    assert_eq!(read_json(&desktop)["globalShortcut"], "Ctrl+Space");

    let missing = f.dir.path().join("nope.json");
    let error = import(&f.options(Source::File(missing))).expect_err("missing");
    assert!(matches!(error, ImportError::Missing { .. }), "{error:?}");
    let empty = f.dir.path().join("empty.json");
    f.write(&empty, "{}");
    let error = import(&f.options(Source::File(empty))).expect_err("no servers");
    assert!(matches!(error, ImportError::NoServers { .. }), "{error:?}");
    let error = import(&f.options(Source::File(f.config()))).expect_err("own");
    assert!(matches!(error, ImportError::OwnConfig { .. }), "{error:?}");
    let nothing = fixture();
    let error = import(&nothing.claude_code()).expect_err("no source");
    assert!(error.to_string().contains(".claude.json"), "{error}");
}

/// The source keeps its permissions; config.json and backups are 0600.
#[cfg(unix)]
#[test]
fn permissions_are_kept_and_secrets_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    let f = fixture();
    f.write(&f.claude_json(), CLAUDE_JSON);
    std::fs::set_permissions(f.claude_json(), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    let report = import(&f.claude_code()).expect("import");
    assert_eq!(mode(&f.claude_json()), 0o640);
    assert_eq!(mode(&f.config()), 0o600);
    for change in &report.files {
        if let Some(backup) = &change.backup {
            assert_eq!(mode(backup), 0o600);
        }
    }
    // A second import into the existing config keeps it private.
    f.write(
        &f.claude_json(),
        r#"{"mcpServers": {"z": {"command": "z"}}}"#,
    );
    std::fs::set_permissions(f.config(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    import(&f.claude_code()).expect("import");
    assert_eq!(mode(&f.config()), 0o600);
}

/// A symlinked source is written through the link.
#[cfg(unix)]
#[test]
fn a_symlinked_source_stays_a_symlink() {
    let f = fixture();
    let real = f.dir.path().join("dotfiles").join("claude.json");
    f.write(&real, r#"{"mcpServers": {"a": {"command": "a"}}}"#);
    std::os::unix::fs::symlink(&real, f.claude_json()).expect("symlink");
    import(&f.claude_code()).expect("import");
    assert!(
        std::fs::symlink_metadata(f.claude_json())
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        read_json(&real)["mcpServers"]["a"]["args"],
        json!(["--target", "a"])
    );
}

/// A file that changed after it was read is not overwritten.
#[test]
fn a_file_changed_meanwhile_stops_the_writes() {
    let f = fixture();
    let path = f.claude_json();
    f.write(&path, "{\"b\": 2}");
    let error = write_changes(
        &[Change {
            path: path.clone(),
            old: Some("{\"a\": 1}"),
            new: "{}",
            private: false,
        }],
        &f.home,
        "1",
    )
    .expect_err("changed");
    assert!(matches!(error, ImportError::Changed { .. }), "{error:?}");
    assert!(
        error.to_string().contains("run the import again"),
        "{error}"
    );
    assert_eq!(read_text(&path), "{\"b\": 2}");
    assert_eq!(std::fs::read_dir(&f.user_home).expect("dir").count(), 1);
}

/// An entry already running the proxy for a built-in that the new
/// config.json no longer has is pointed out; a BOM is kept.
#[test]
fn a_target_the_new_config_lacks_is_noted() {
    let f = fixture();
    let text = "\u{feff}{\"mcpServers\": {\"memory\": {\"command\": \"/x/mcp-proxy\", \"args\": [\"--target\", \"memory\"]}, \"a\": {\"command\": \"a\"}}}";
    f.write(&f.claude_json(), text);
    let report = import(&f.claude_code()).expect("import");
    assert!(
        report.notes.iter().any(|n| n.contains("--target memory")),
        "{:?}",
        report.notes
    );
    assert!(
        read_text(&f.claude_json())
            .starts_with("\u{feff}{\"mcpServers\": {\"memory\": {\"command\": \"/x/mcp-proxy\"")
    );
}

/// A tiny HTTP server on loopback for the `--remote` probe: `/login`
/// answers 401 with `WWW-Authenticate` (an OAuth server), `/ok` 200 when
/// the entry's header arrived (403 otherwise). Serves `limit` requests.
fn remote_server(limit: usize) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(limit) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let (mut length, mut keyed) = (0, false);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                let lower = header.to_ascii_lowercase();
                if let Some(n) = lower.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap_or(0);
                }
                keyed |= lower.trim() == "x-api-key: k3y";
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = if line.contains(" /login ") {
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer resource_metadata=\"http://127.0.0.1/.well-known/oauth-protected-resource\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else if keyed {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
            } else {
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

/// By default a remote entry, with or without headers, is left byte for
/// byte: nothing is written when it is all there is, and the report says
/// why for each.
#[test]
fn a_remote_entry_is_left_byte_identical_by_default() {
    let f = fixture();
    let text = "{\n  \"mcpServers\": {\n    \"oauth\": {\"type\": \"http\", \"url\": \"https://mcp.example.com/mcp\"},\n    \"keyed\": {\n      \"type\": \"sse\",\n      \"url\": \"https://x.example.com/sse?token=abc\",\n      \"headers\": {\"X-Api-Key\": \"k3y\"}\n    }\n  }\n}\n";
    f.write(&f.claude_json(), text);
    let before = f.snapshot();
    let report = import(&f.claude_code()).expect("import");
    assert_eq!(f.snapshot(), before);
    assert!(!f.config().exists());
    assert!(report.files.is_empty());
    assert_eq!(report.servers.len(), 2);
    for server in &report.servers {
        let Outcome::LeftWithClaude { url, reason } = &server.outcome else {
            panic!("{server:?}");
        };
        assert!(!url.contains("abc"), "{url}");
        assert!(
            reason.contains("OAuth") && reason.contains("--remote"),
            "{reason}"
        );
    }
    let shown = report.to_string();
    assert!(
        shown.contains("oauth") && shown.contains("left as it is") && !shown.contains("k3y"),
        "{shown}"
    );
}

/// `--remote` moves a remote server with static headers once the probe
/// got through with them, and refuses one that answers 401 with
/// `WWW-Authenticate` (left as it was, with the reason); one without
/// headers stays too. `--dry-run` says the same and writes nothing.
#[test]
fn remote_moves_a_static_header_one_and_refuses_a_login() {
    let f = fixture();
    let port = remote_server(4);
    let login = format!(
        "{{\"type\": \"http\", \"url\": \"http://127.0.0.1:{port}/login\", \"headers\": {{\"X-Api-Key\": \"k3y\"}}}}"
    );
    let bare = format!("{{\"type\": \"http\", \"url\": \"http://127.0.0.1:{port}/bare\"}}");
    let text = format!(
        "{{\"mcpServers\": {{\"login\": {login}, \"keyed\": {{\"type\": \"http\", \"url\": \"http://127.0.0.1:{port}/ok\", \"headers\": {{\"X-Api-Key\": \"k3y\"}}}}, \"bare\": {bare}}}}}"
    );
    f.write(&f.claude_json(), &text);
    let mut options = f.claude_code();
    options.remote = true;

    let check = |report: &ImportReport| {
        let outcomes: Vec<&Outcome> = report.servers.iter().map(|s| &s.outcome).collect();
        assert!(
            matches!(outcomes[0], Outcome::LeftWithClaude { reason, .. }
                if reason.contains("401") && reason.contains("WWW-Authenticate") && reason.contains("only Claude Code")),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[1], Outcome::Remote { url } if url.ends_with("/ok")),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[2], Outcome::LeftWithClaude { reason, .. } if reason.contains("without static headers")),
            "{outcomes:?}"
        );
        assert!(
            !report.notes.iter().any(|n| n.starts_with("keyed:")),
            "{:?}",
            report.notes
        );
    };

    let mut dry = options.clone();
    dry.dry_run = true;
    let before = f.snapshot();
    let planned = import(&dry).expect("dry run");
    assert_eq!(f.snapshot(), before);
    check(&planned);

    let report = import(&options).expect("import");
    check(&report);
    let after = read_text(&f.claude_json());
    assert!(after.contains(&login) && after.contains(&bare), "{after}");
    let source = read_json(&f.claude_json());
    assert_eq!(
        source["mcpServers"]["keyed"]["args"],
        json!(["--target", "keyed"])
    );
    let config = read_json(&f.config());
    assert_eq!(
        config["mcpServers"]["keyed"],
        json!({"type": "http", "url": format!("http://127.0.0.1:{port}/ok"), "headers": {"X-Api-Key": "k3y"}})
    );
    assert!(config["mcpServers"].get("login").is_none());
    assert!(config["mcpServers"].get("bare").is_none());
}

/// A stdio server whose env or args use `${VAR}` is noted once, by the
/// variables' names (never their values); one without is not.
#[test]
fn a_shell_variable_is_noted() {
    let f = fixture();
    f.write(
        &f.claude_json(),
        r#"{"mcpServers": {"db": {"command": "db-server", "args": ["--dir", "${HOME}/db", "${DB_MODE:-ro}"], "env": {"DB_URL": "${DATABASE_URL}", "X": "plain"}}, "plain": {"command": "p", "env": {"A": "$NOT_BRACED"}}}}"#,
    );
    let report = import(&f.claude_code()).expect("import");
    let notes: Vec<&String> = report
        .notes
        .iter()
        .filter(|n| n.contains("manager's value"))
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", report.notes);
    assert!(
        notes[0].starts_with("db:")
            && notes[0].contains("${DATABASE_URL}, ${DB_MODE}, ${HOME}")
            && notes[0].contains("not your session's shell's"),
        "{notes:?}"
    );
}

/// `command` and `args` as written in a file, classified.
fn family(command: &str, args: &[&str]) -> Option<&'static str> {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    super::scope::browser_family(Some(command), &args)
}

/// Browser-automation servers, however they are launched, are recognised.
#[test]
fn browser_servers_are_recognised() {
    for (command, args, expected) in [
        ("npx", &["-y", "@playwright/mcp@latest"][..], "playwright"),
        ("npx", &["@playwright/mcp", "--headless"], "playwright"),
        ("npx", &["-y", "mcp-playwright"], "playwright"),
        ("mcp-server-playwright", &[], "playwright"),
        (
            "docker",
            &[
                "run",
                "-i",
                "--rm",
                "mcr.microsoft.com/playwright/mcp:latest",
            ],
            "playwright",
        ),
        (
            "node",
            &["/opt/x/node_modules/@playwright/mcp/cli.js"],
            "playwright",
        ),
        (
            "npx",
            &["-y", "@modelcontextprotocol/server-puppeteer"],
            "puppeteer",
        ),
        ("npx", &["puppeteer-mcp-server@0.7.2"], "puppeteer"),
        ("npx", &["chrome-devtools-mcp@latest"], "chrome-devtools"),
        (
            "C:\\Program Files\\nodejs\\npx.cmd",
            &["-y", "chrome-devtools-mcp"],
            "chrome-devtools",
        ),
        ("uvx", &["browser-use", "--mcp"], "browser-use"),
        (
            "uvx",
            &["--from", "browser-use[cli]", "browser-use", "--mcp"],
            "browser-use",
        ),
        ("uvx", &["mcp_server_browser_use"], "browser-use"),
        (
            "npx",
            &["-y", "@browserbasehq/mcp-server-browserbase"],
            "browserbase",
        ),
        (
            "npx",
            &["--package=@browserbasehq/mcp", "mcp"],
            "browserbase",
        ),
    ] {
        assert_eq!(family(command, args), Some(expected), "{command} {args:?}");
    }
}

/// Anything else is not a browser server: the rule is conservative.
#[test]
fn other_servers_are_not_browser_servers() {
    for (command, args) in [
        ("npx", &["-y", "@modelcontextprotocol/server-memory"][..]),
        ("node", &["./playwright-report.js"]),
        ("npx", &["playwright", "test"]),
        ("npx", &["-y", "puppeteer"]),
        ("uvx", &["browser-use"]),
        ("python", &["-m", "my_server", "--name", "playwright"]),
        (
            "npx",
            &[
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/home/me/mcp-playwright",
            ],
        ),
        ("/usr/local/bin/playwright", &[]),
    ] {
        assert_eq!(family(command, args), None, "{command} {args:?}");
    }
    assert_eq!(super::scope::browser_family(None, &[]), None);
}

/// A browser server is imported with scope `session`, a project's server
/// with `project`, a user's with `shared`, `--scope` wins; the report says
/// why for each, and the config gets that scope.
#[test]
fn the_scope_follows_what_the_server_is() {
    let f = fixture();
    let project = f.dir.path().join("proj");
    std::fs::create_dir_all(&project).expect("project");
    let key = absolute(&project).to_string_lossy().into_owned();
    let claude = json!({
        "mcpServers": {
            "playwright": {"command": "npx", "args": ["-y", "@playwright/mcp@latest"]},
            "devtools": {"command": "npx", "args": ["chrome-devtools-mcp@latest"]},
            "memo": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"]},
            "report": {"command": "node", "args": ["./playwright-report.js"]}
        },
        "projects": {
            key.clone(): {"enabledMcpjsonServers": ["team"], "mcpServers": {"browse": {"command": "uvx", "args": ["browser-use", "--mcp"]}}}
        }
    });
    f.write(
        &f.claude_json(),
        &serde_json::to_string_pretty(&claude).expect("json"),
    );
    f.write(
        &project.join(".mcp.json"),
        r#"{"mcpServers": {"team": {"command": "t"}}}"#,
    );
    let mut options = f.options(Source::ClaudeCode {
        project: Some(project.clone()),
    });
    options.scopes.insert("devtools".into(), Scope::Shared);
    let report = import(&options).expect("import");
    let scope_of = |name: &str| {
        report
            .servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.outcome.clone())
    };
    for (name, scope, why) in [
        ("playwright", Scope::Session, ScopeReason::Browser),
        ("devtools", Scope::Shared, ScopeReason::Asked),
        ("memo", Scope::Shared, ScopeReason::User),
        ("report", Scope::Shared, ScopeReason::User),
        ("browse", Scope::Session, ScopeReason::Browser),
        ("team", Scope::Project, ScopeReason::Project),
    ] {
        assert!(
            matches!(
                scope_of(name),
                Some(Outcome::Hosted { scope: s, scope_reason: r, .. }) if s == scope && r == why
            ),
            "{name}: {:?}",
            scope_of(name)
        );
        let config = read_json(&f.config());
        let target = report
            .servers
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.target.clone())
            .expect("target");
        assert_eq!(
            config["mcpServers"][&target]["scope"],
            scope_name(scope),
            "{name}"
        );
    }
    let shown = report.to_string();
    let line = |name: &str| {
        shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("playwright")
            .contains("scope session: a browser automation server keeps one browser per session"),
        "{shown}"
    );
    assert!(
        line("devtools").contains("scope shared: as asked with --scope"),
        "{shown}"
    );
    assert!(
        line("memo").contains("scope shared: a user server"),
        "{shown}"
    );
    assert!(
        line("team").contains("scope project: a project's server"),
        "{shown}"
    );
    let json = serde_json::to_value(&report).expect("serialize");
    let playwright = json["servers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "playwright"))
        .expect("playwright");
    assert_eq!(playwright["scope"], "session");
    assert_eq!(playwright["scopeReason"], "browser");
}
