//! The official conformance suite (`@modelcontextprotocol/conformance`,
//! pinned in `tests/fixtures/package.json`; its CLI runs on a Node ≥ 22,
//! `tests/fixtures/node22` when the machine's is older) in the tests
//! (issue 17, item 5):
//! - its server scenarios against `mcp-manager host` wrapping the suite's
//!   reference server (`tests/fixtures/conformance/everything-server.ts`)
//!   over stdio: first against the reference server over HTTP directly,
//!   then through the host, and every scenario that passes directly must
//!   pass through the host — once with the default suite (the 2025 era)
//!   and once with the 2026-07-28 requirement set;
//! - its client scenarios through `mcp-proxy`: the suite's scenario server
//!   behind `mcp-proxy --url`, launched by
//!   `tests/fixtures/conformance/proxy_client.mjs` (the TS SDK v2 client over
//!   stdio); the same client straight over HTTP is the baseline, and every
//!   scenario passing directly must pass through the proxy.
//!
//! Each run is bounded (the CLI's own timeouts, and 240 s per run here);
//! everything is on loopback. The lists are printed on stderr.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use crate::util::{
    HostProcess, TestHome, conformance_js, fixtures, free_port, node22, proxy_bin, wait_for_port,
};

/// The suite's reference server (HTTP on `PORT`, or `--stdio`).
fn reference_server() -> String {
    fixtures()
        .join("conformance/everything-server.ts")
        .to_string_lossy()
        .into_owned()
}

/// The reference server over HTTP on a free loopback port, killed when dropped.
async fn start_reference_http() -> (Child, u16) {
    let port = free_port();
    let child = Command::new(node22())
        .arg(reference_server())
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the conformance reference server");
    wait_for_port(port, Duration::from_secs(30)).await;
    (child, port)
}

/// Runs the conformance CLI with `args` in `cwd` (its results directory
/// goes there), bounded to 240 s; returns stdout and stderr together.
async fn conformance(args: &[&str], env: &[(&str, &std::ffi::OsStr)], cwd: &Path) -> String {
    let mut command = Command::new(node22());
    command
        .arg(conformance_js())
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(240), command.output())
        .await
        .unwrap_or_else(|_| panic!("conformance {args:?} finished within 240 s"))
        .expect("run the conformance CLI");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The server run's summary: scenario → passed (its line starts with ✓).
fn server_summary(output: &str) -> BTreeMap<String, bool> {
    let summary = output
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in the conformance output:\n{output}"));
    summary
        .lines()
        .filter_map(|line| {
            let (mark, rest) = line.trim().split_once(' ')?;
            let (name, counts) = rest.split_once(": ")?;
            counts.contains(" passed, ").then_some(())?;
            match mark {
                "✓" => Some((name.to_owned(), true)),
                "✗" => Some((name.to_owned(), false)),
                _ => None,
            }
        })
        .collect()
}

fn passing(results: &BTreeMap<String, bool>) -> Vec<&str> {
    results
        .iter()
        .filter(|(_, ok)| **ok)
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The promise: every scenario passing directly passes through the host.
async fn server_scenarios_through_host(extra: &[&str], at_least: usize) {
    let work = tempfile::tempdir().expect("tempdir");
    let (_reference, port) = start_reference_http().await;
    let direct_url = format!("http://127.0.0.1:{port}/mcp");
    let mut args = vec!["server", "--url", direct_url.as_str()];
    args.extend_from_slice(extra);
    let direct_out = conformance(&args, &[], work.path()).await;
    let direct = server_summary(&direct_out);
    let baseline = passing(&direct);
    assert!(
        baseline.len() >= at_least,
        "only {} scenarios pass against the reference server directly (expected ≥ {at_least}):\n{direct_out}",
        baseline.len()
    );

    let home = TestHome::new();
    let host = HostProcess::start(
        &home,
        "reference",
        json!({
            "command": node22().to_string_lossy(),
            "args": [reference_server(), "--stdio"],
            "port": free_port(),
            "startTimeout": 20,
        }),
    )
    .await;
    let host_url = host.url();
    let mut args = vec!["server", "--url", host_url.as_str()];
    args.extend_from_slice(extra);
    let via_out = conformance(&args, &[], work.path()).await;
    let via = server_summary(&via_out);
    let lost: Vec<&str> = baseline
        .iter()
        .copied()
        .filter(|name| via.get(*name) != Some(&true))
        .collect();
    eprintln!(
        "conformance server {extra:?}: direct passes {}/{}: {baseline:?}\n  \
         through the host passes {}/{}: {:?}\n  passing directly, not through the host: {lost:?}",
        baseline.len(),
        direct.len(),
        passing(&via).len(),
        via.len(),
        passing(&via),
    );
    assert!(
        lost.is_empty(),
        "scenarios passing against the reference server directly fail through mcp-manager host: {lost:?}\n\
         host run:\n{via_out}"
    );
}

#[tokio::test]
async fn server_scenarios_pass_through_the_host_as_directly() {
    server_scenarios_through_host(&[], 25).await;
}

#[tokio::test]
#[ignore = "issue 17, open: the vendored reference server's --stdio mode speaks only 2025-11-25 (its 2026-07-28 dispatch exists only in its HTTP handler), so the host has no 2026 child to pass the 2026 set through to; needs a 2026-speaking stdio mode of the fixture"]
async fn server_scenarios_2026_07_28_pass_through_the_host_as_directly() {
    server_scenarios_through_host(&["--requirements", "2026-07-28"], 25).await;
}

/// One client scenario (at `spec`, if given) with `proxy_client.mjs`:
/// through `mcp-proxy`, or (`direct`) straight over HTTP. True iff it passed.
async fn client_scenario(
    scenario: &str,
    spec: Option<&str>,
    direct: bool,
    home: &TestHome,
) -> (bool, String) {
    let work = tempfile::tempdir().expect("tempdir");
    let client = format!(
        "node {}",
        fixtures().join("conformance/proxy_client.mjs").display()
    );
    let mut args = vec![
        "client",
        "--command",
        client.as_str(),
        "--scenario",
        scenario,
        "--timeout",
        "30000",
    ];
    if let Some(spec) = spec {
        args.extend_from_slice(&["--spec-version", spec]);
    }
    let proxy = proxy_bin();
    let env: Vec<(&str, &std::ffi::OsStr)> = vec![
        ("MCP_PROXY_BIN", proxy.as_os_str()),
        ("MCP_SESSION_MANAGER_HOME", home.path().as_os_str()),
        ("MCP_PROXY_LOG", std::ffi::OsStr::new("warn")),
        (
            "MCP_CONFORMANCE_DIRECT",
            std::ffi::OsStr::new(if direct { "1" } else { "0" }),
        ),
    ];
    let out = conformance(&args, &env, work.path()).await;
    (out.contains("OVERALL: PASSED"), out)
}

/// The client scenarios the proxy can be in the path of (the `auth/*` ones
/// test an OAuth client, which `proxy_client.mjs` is not), with the spec
/// version they run at.
const CLIENT_SCENARIOS: &[(&str, Option<&str>)] = &[
    ("initialize", None),
    ("tools_call", None),
    ("sse-retry", None),
    ("elicitation-sep1034-client-defaults", None),
    ("tools_call", Some("2026-07-28")),
    ("request-metadata", None),
];

#[tokio::test]
async fn client_scenarios_pass_through_the_proxy_as_directly() {
    let home = TestHome::new();
    let mut baseline = Vec::new();
    let mut not_direct = Vec::new();
    let mut lost = Vec::new();
    let mut outputs = String::new();
    for &(scenario, spec) in CLIENT_SCENARIOS {
        let label = format!("{scenario}@{}", spec.unwrap_or("default"));
        let (ok_direct, _) = client_scenario(scenario, spec, true, &home).await;
        if !ok_direct {
            not_direct.push(label);
            continue;
        }
        let (ok_via, out) = client_scenario(scenario, spec, false, &home).await;
        if !ok_via {
            outputs.push_str(&format!("--- {label} through mcp-proxy:\n{out}\n"));
            lost.push(label.clone());
        }
        baseline.push(label);
    }
    eprintln!(
        "conformance client scenarios: pass directly {baseline:?}\n  \
         fail directly (not required): {not_direct:?}\n  \
         pass directly, fail through mcp-proxy: {lost:?}"
    );
    assert!(
        baseline.len() >= 3,
        "too few client scenarios pass directly: {baseline:?} (failing: {not_direct:?})"
    );
    assert!(
        lost.is_empty(),
        "client scenarios passing directly fail through mcp-proxy: {lost:?}\n{outputs}"
    );
}
