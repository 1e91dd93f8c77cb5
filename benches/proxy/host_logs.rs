//! The host's log-routing table: what routing a child's
//! `notifications/message` lines costs `mcp-manager host` as sessions pile
//! up (issue 13: "host CPU per routed log line at 5,000 sessions").
//!
//! The child is `log_server.py` (beside this file; Python, standard library
//! only): on a `tools/call emit` it writes that many log lines to stdout as
//! fast as it can, and it can hold calls pending. One host, three runs of
//! the same emission:
//! 1. one session wants the lines (the watcher: `logging/setLevel debug`
//!    and a GET stream) — the baseline;
//! 2. then N more sessions, each with `logging/setLevel info`, G of them
//!    with a GET stream open and P with a call pending on an event stream,
//!    while the lines are at `debug`: still only the watcher wants them;
//! 3. the same with the lines at `info`: the watcher and the G + P sessions
//!    that can take a message get each line.
//!
//! Each run measures the host's CPU (every thread's, to the nanosecond on
//! Linux) ÷ lines and ÷ copies delivered, the time until every copy is read,
//! and how long another session's echo, sent when the first line reaches
//! the watcher, waits. The emitter and that prober speak JSON only, so no
//! line is routed to them. A time budget bounds the table; loopback only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::Command;
use tokio::task::JoinSet;

use crate::Plan;
use crate::host::{Budget, Hosted};
use crate::mcp_clients::{Client, Direct, shorten};
use crate::procs::{load_average, thread_cpu_since, thread_cpu_times};
use crate::report::{Unit, print_errors, ratio, secs, show, show_ratio, verdict};

/// The config entry the host serves.
const ENTRY: &str = "logs";
/// The child, beside this file.
const SCRIPT: &str = "log_server.py";
/// How long the copies of a run's lines may take to be read once the child
/// has written them all.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Sessions opened at once.
const OPENERS: usize = 16;
/// Emissions per scenario (the median is shown), after one untimed.
const REPEATS: usize = 5;
/// What every copy of a log line holds (the child writes it so).
const NEEDLE: &[u8] = b"\"notifications/message\"";

// Targets: the cost follows who wants a line, not how many sessions exist.
const TARGET_IDLE_RATIO: f64 = 2.0;
const TARGET_COPY_RATIO: f64 = 2.0;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("proxy")
        .join(SCRIPT)
}

/// `python3` (or `python`) if it runs.
async fn find_python() -> Result<&'static str, String> {
    let candidates: [&'static str; 2] = if cfg!(windows) {
        ["python", "python3"]
    } else {
        ["python3", "python"]
    };
    for candidate in candidates {
        let status = Command::new(candidate)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(5), status).await {
            if status.success() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "no python3 on PATH: the log-routing table needs it for benches/proxy/{SCRIPT}"
    ))
}

/// Copies of log lines the benchmark's streams have read.
#[derive(Debug, Default)]
struct Copies {
    watcher: AtomicU64,
    others: AtomicU64,
}

impl Copies {
    fn total(&self) -> u64 {
        self.watcher.load(Ordering::Relaxed) + self.others.load(Ordering::Relaxed)
    }
}

/// Reads an event stream to its end, counting the log lines in it.
async fn count_copies(mut response: reqwest::Response, copies: Arc<Copies>, watcher: bool) {
    let counter = if watcher {
        &copies.watcher
    } else {
        &copies.others
    };
    // The last bytes of the previous chunk: a needle may straddle two.
    let mut window: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        window.extend_from_slice(&chunk);
        counter.fetch_add(occurrences(&window, NEEDLE), Ordering::Relaxed);
        let keep = window.len().saturating_sub(NEEDLE.len() - 1);
        window.drain(..keep);
    }
}

/// How often `needle` occurs in `haystack`, without overlaps.
fn occurrences(haystack: &[u8], needle: &[u8]) -> u64 {
    let Some(&first) = needle.first() else {
        return 0;
    };
    let (mut count, mut at) = (0, 0);
    while let Some(offset) = haystack
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == first))
    {
        let start = at + offset;
        if haystack.get(start..start + needle.len()) == Some(needle) {
            count += 1;
            at = start + needle.len();
        } else {
            at = start + 1;
        }
    }
    count
}

/// What one emission measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    lines: u64,
    /// Sessions that should get each line, and the copies read.
    wanted_by: u64,
    delivered: u64,
    host_cpu: Option<Duration>,
    /// `emit` sent → answered: the child wrote every line and the host read
    /// them all (the child answers after its last line).
    through_host: Duration,
    /// `emit` sent → every copy read by its session.
    all_read: Option<Duration>,
    /// Another session's echo, sent once the first line reached the watcher.
    echo: Duration,
}

impl Run {
    fn cpu_per_line(&self) -> Option<f64> {
        let cpu = secs(self.host_cpu)?;
        (self.lines > 0).then(|| cpu / self.lines as f64)
    }

    fn cpu_per_copy(&self) -> Option<f64> {
        let cpu = secs(self.host_cpu)?;
        (self.delivered > 0).then(|| cpu / self.delivered as f64)
    }
}

/// The sessions that stay open through the runs.
struct Fixed {
    emitter: Direct,
    prober: Direct,
    host_pid: u32,
    copies: Arc<Copies>,
}

impl Fixed {
    /// The child writes `lines` log lines at `level`; `wanted_by` sessions
    /// should read each one.
    async fn emission(
        &self,
        lines: u64,
        level: &str,
        wanted_by: u64,
        budget: &Budget,
    ) -> Result<Run, String> {
        if budget.spent() {
            return Err(budget.message());
        }
        let limit = budget.left();
        let before = self.copies.total();
        let before_watcher = self.copies.watcher.load(Ordering::Relaxed);
        let cpu_before = thread_cpu_times(self.host_pid);
        let start = Instant::now();
        let emitter = self.emitter.clone();
        let params = json!({"name": "emit", "arguments": {"count": lines, "level": level}});
        let mut emit = tokio::spawn(async move {
            let answer = emitter
                .request_json_only("tools/call", &params, limit)
                .await;
            (answer, start.elapsed())
        });
        // The first line at the watcher (or the emission over, if it was
        // quicker than the polling).
        let mut emitted = None;
        while self.copies.watcher.load(Ordering::Relaxed) == before_watcher {
            if start.elapsed() > limit {
                emit.abort();
                return Err(format!("no log line reached the watcher within {limit:?}"));
            }
            tokio::select! {
                joined = &mut emit => {
                    emitted = Some(joined.map_err(|e| format!("emit task: {e}"))?);
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        let sent = Instant::now();
        let echo = json!({"name": "echo", "arguments": {"message": "bench"}});
        let answer = self
            .prober
            .request_json_only("tools/call", &echo, limit)
            .await
            .map_err(|e| format!("the echo during the emission: {e}"))?;
        let echo = sent.elapsed();
        check_text(&answer, "Echo:")?;
        let (answer, through_host) = match emitted {
            Some(emitted) => emitted,
            None => emit.await.map_err(|e| format!("emit task: {e}"))?,
        };
        check_text(&answer?, "emitted")?;
        let expected = before + lines * wanted_by;
        let drained = Instant::now() + DRAIN_TIMEOUT;
        while self.copies.total() < expected && Instant::now() < drained {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let all_read = (self.copies.total() >= expected).then(|| start.elapsed());
        let host_cpu = cpu_before.and_then(|b| thread_cpu_since(self.host_pid, &b));
        Ok(Run {
            lines,
            wanted_by,
            delivered: self.copies.total() - before,
            host_cpu,
            through_host,
            all_read,
            echo,
        })
    }
}

impl Fixed {
    /// [`Fixed::emission`] [`REPEATS`] times; their median (per metric).
    async fn emissions(
        &self,
        lines: u64,
        level: &str,
        wanted_by: u64,
        budget: &Budget,
    ) -> Result<Median, String> {
        let mut runs = Vec::with_capacity(REPEATS);
        for _ in 0..REPEATS {
            runs.push(self.emission(lines, level, wanted_by, budget).await?);
        }
        Ok(Median(runs))
    }
}

/// Runs of one scenario, each metric shown as their median.
#[derive(Debug, Clone)]
struct Median(Vec<Run>);

impl Median {
    fn of(&self, value: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        let mut values: Vec<f64> = self.0.iter().filter_map(value).collect();
        values.sort_unstable_by(f64::total_cmp);
        values.get(values.len().checked_sub(1)? / 2).copied()
    }

    fn first(&self) -> Option<&Run> {
        self.0.first()
    }
}

fn check_text(answer: &Value, prefix: &str) -> Result<(), String> {
    match answer
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
    {
        Some(text) if text.starts_with(prefix) => Ok(()),
        _ => Err(format!(
            "unexpected answer: {}",
            shorten(&answer.to_string())
        )),
    }
}

/// A session opened (`initialize`, `initialized`), with `level` set if given.
async fn open(template: &Direct, level: Option<&str>) -> Result<Direct, String> {
    let mut session = template.fresh();
    session.initialize().await?;
    if let Some(level) = level {
        let answer = session
            .request("logging/setLevel", json!({"level": level}))
            .await?;
        if answer.get("result").is_none() {
            return Err(format!(
                "logging/setLevel failed: {}",
                shorten(&answer.to_string())
            ));
        }
    }
    Ok(session)
}

/// What the crowd of sessions holds open.
#[derive(Debug, Default)]
struct Crowd {
    sessions: usize,
    streams: usize,
    pending: usize,
}

/// Opens `plan.log_sessions` sessions at `info`, OPENERS at a time: the
/// first `log_streams` with a GET stream, the next `log_pending` with a
/// held call on an event stream (read by `readers`, counted in `copies`).
async fn open_crowd(
    template: &Direct,
    plan: Plan,
    copies: &Arc<Copies>,
    readers: &mut JoinSet<()>,
    budget: &Budget,
) -> (Crowd, Option<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + budget.left();
    let mut workers = JoinSet::new();
    for _ in 0..OPENERS {
        let (template, next, stop) = (template.clone(), Arc::clone(&next), Arc::clone(&stop));
        workers.spawn(async move {
            let mut opened = (0usize, Vec::new(), Vec::new());
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= plan.log_sessions || stop.load(Ordering::Relaxed) {
                    return Ok(opened);
                }
                if Instant::now() > deadline {
                    stop.store(true, Ordering::Relaxed);
                    return Err(format!("{} sessions not open in time", plan.log_sessions));
                }
                let result = async {
                    let session = open(&template, Some("info")).await?;
                    if index < plan.log_streams {
                        opened.1.push(session.get_stream().await?);
                    } else if index < plan.log_streams + plan.log_pending {
                        let hold = json!({"name": "hold", "arguments": {}});
                        opened
                            .2
                            .push(session.request_streaming("tools/call", &hold).await?);
                    }
                    opened.0 += 1;
                    Ok::<_, String>(())
                }
                .await;
                if let Err(error) = result {
                    stop.store(true, Ordering::Relaxed);
                    return Err(format!("session {}: {error}", index + 1));
                }
            }
        });
    }
    let mut crowd = Crowd::default();
    let mut first_error = None;
    while let Some(worker) = workers.join_next().await {
        let (sessions, streams, pending) = match worker {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
                continue;
            }
            Err(error) => {
                first_error.get_or_insert(format!("opener failed: {error}"));
                continue;
            }
        };
        crowd.sessions += sessions;
        crowd.streams += streams.len();
        crowd.pending += pending.len();
        for response in streams.into_iter().chain(pending) {
            readers.spawn(count_copies(response, Arc::clone(copies), false));
        }
    }
    (crowd, first_error)
}

/// The log-routing table (run with the host table).
pub(crate) async fn run_host_logs(plan: Plan) {
    let started = Instant::now();
    let load_before = load_average();
    let budget = Budget::of(plan.log_budget, plan.log_budget);
    let mut errors = Vec::new();
    let mut note = |error: String| {
        eprintln!("bench: log routing: {error}");
        errors.push(format!("log routing: {error}"));
    };
    let mut runs: [Option<Median>; 3] = [None, None, None];
    let mut crowd = Crowd::default();
    let mut readers = JoinSet::new();

    let hosted = match find_python().await {
        Ok(python) => {
            let args = vec![script().to_string_lossy().into_owned()];
            Hosted::start_server(ENTRY, python, args, SCRIPT).await
        }
        Err(error) => Err(error),
    };
    match hosted {
        Err(error) => note(error),
        Ok(hosted) => {
            let copies = Arc::new(Copies::default());
            let setup = async {
                let template = Direct::new(&hosted.url())?;
                let emitter = open(&template, None).await?;
                let prober = open(&template, None).await?;
                let watcher = open(&template, Some("debug")).await?;
                let stream = watcher.get_stream().await?;
                readers.spawn(count_copies(stream, Arc::clone(&copies), true));
                Ok::<_, String>((template, emitter, prober))
            };
            match setup.await {
                Err(error) => note(format!("setting up: {error}")),
                Ok((template, emitter, prober)) => {
                    let fixed = Fixed {
                        emitter,
                        prober,
                        host_pid: hosted.pid,
                        copies: Arc::clone(&copies),
                    };
                    let lines = plan.log_lines as u64;
                    if let Err(error) = fixed.emission(lines, "debug", 1, &budget).await {
                        note(format!("warm-up: {error}"));
                    }
                    match fixed.emissions(lines, "debug", 1, &budget).await {
                        Ok(run) => runs[0] = Some(run),
                        Err(error) => note(format!("1 session: {error}")),
                    }
                    let (opened, error) =
                        open_crowd(&template, plan, &copies, &mut readers, &budget).await;
                    crowd = opened;
                    if let Some(error) = error {
                        note(format!("opening the sessions: {error}"));
                    }
                    // Let the last held calls reach the child.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match fixed.emissions(lines, "debug", 1, &budget).await {
                        Ok(run) => runs[1] = Some(run),
                        Err(error) => note(format!("lines for 1: {error}")),
                    }
                    let wanted = 1 + (crowd.streams + crowd.pending) as u64;
                    match fixed.emissions(lines, "info", wanted, &budget).await {
                        Ok(run) => runs[2] = Some(run),
                        Err(error) => note(format!("lines for {wanted}: {error}")),
                    }
                    let release = json!({"name": "release", "arguments": {}});
                    if let Err(error) = fixed
                        .emitter
                        .request_json_only("tools/call", &release, Duration::from_secs(10))
                        .await
                    {
                        note(format!("releasing the held calls: {error}"));
                    }
                }
            }
            readers.abort_all();
            if let Err(error) = hosted.stop().await {
                note(error);
            }
        }
    }
    for (index, scenario) in runs.iter().enumerate() {
        for run in scenario.iter().flat_map(|m| &m.0) {
            if run.delivered != run.lines * run.wanted_by {
                note(format!(
                    "column {}: {} copies read of {} expected",
                    index + 1,
                    run.delivered,
                    run.lines * run.wanted_by
                ));
            }
        }
    }
    print_report(
        plan,
        &runs,
        &crowd,
        &errors,
        started.elapsed(),
        (load_before, load_average()),
    );
}

/// [`show`], with a tenth of a microsecond below 10 µs (CPU per line).
fn cell_value(value: Option<f64>, unit: Unit) -> String {
    match (value, unit) {
        (Some(v), Unit::Time) if v < 1e-5 => format!("{:.1} µs", v * 1e6),
        _ => show(value, unit),
    }
}

fn print_report(
    plan: Plan,
    runs: &[Option<Median>; 3],
    crowd: &Crowd,
    errors: &[String],
    elapsed: Duration,
    load: (Option<String>, Option<String>),
) {
    let [base, idle, busy] = runs;
    let wanted = busy
        .as_ref()
        .and_then(Median::first)
        .map_or(1 + crowd.streams + crowd.pending, |r| r.wanted_by as usize);
    let crowd_label = format!(
        "{} sessions ({} GET streams, {} calls pending)",
        crowd.sessions, crowd.streams, crowd.pending
    );
    println!();
    println!(
        "## mcp-manager host: routing a child's log lines{} — {} `notifications/message` lines written at once by a stdio server ({SCRIPT}), {} CPUs, load average {} → {}",
        if plan.quick { " (BENCH_QUICK)" } else { "" },
        plan.log_lines,
        std::thread::available_parallelism().map_or(0, usize::from),
        load.0.as_deref().unwrap_or("n/a"),
        load.1.as_deref().unwrap_or("n/a"),
    );
    println!();
    println!(
        "| metric | 1 session wants them | {crowd_label}, 1 wants them | the same, {wanted} want them |"
    );
    println!("|---|---:|---:|---:|");
    let row = |metric: &str, value: &dyn Fn(&Run) -> Option<f64>, unit: Unit, with_ratio: bool| {
        let base_value = base.as_ref().and_then(|m| m.of(value));
        let cell = |run: &Option<Median>, first: bool| {
            let v = run.as_ref().and_then(|m| m.of(value));
            if first || !with_ratio {
                cell_value(v, unit)
            } else {
                format!(
                    "{} ({})",
                    cell_value(v, unit),
                    show_ratio(ratio(v, base_value))
                )
            }
        };
        println!(
            "| {metric} | {} | {} | {} |",
            cell(base, true),
            cell(idle, false),
            cell(busy, false)
        );
    };
    let copies = |run: &Option<Median>| {
        run.as_ref().and_then(Median::first).map_or_else(
            || "n/a".to_owned(),
            |r| {
                format!(
                    "{} ({} per line)",
                    r.delivered,
                    r.delivered / r.lines.max(1)
                )
            },
        )
    };
    println!(
        "| copies read by the sessions, per run | {} | {} | {} |",
        copies(base),
        copies(idle),
        copies(busy)
    );
    row(
        "host CPU per log line¹",
        &Run::cpu_per_line,
        Unit::Time,
        true,
    );
    row(
        "host CPU per copy delivered",
        &Run::cpu_per_copy,
        Unit::Time,
        true,
    );
    row(
        "all lines through the host (`emit` sent → answered)",
        &|r| Some(r.through_host.as_secs_f64()),
        Unit::Time,
        true,
    );
    row(
        "every copy read by its session",
        &|r| secs(r.all_read),
        Unit::Time,
        true,
    );
    row(
        "another session's echo, sent at the first line²",
        &|r| Some(r.echo.as_secs_f64()),
        Unit::Time,
        true,
    );
    println!();
    println!(
        "One `mcp-manager host` (scope shared) with one child, `{SCRIPT}`, which writes the lines as fast as \
         its stdout drains. 1 session: the watcher (`logging/setLevel debug`, a GET stream). Then \
         {} more sessions at `logging/setLevel info`, the first {} with a GET stream, the next {} with a \
         `tools/call` held pending on an event stream (both read by the benchmark), the rest idle: lines at \
         `debug` are for the watcher alone, lines at `info` for the watcher and every session that can take \
         a message. The emitter and the echo's session speak JSON only (no line is routed to them). \
         Each column: the median of {REPEATS} runs, after one untimed.",
        crowd.sessions, crowd.streams, crowd.pending
    );
    println!(
        "¹ the host's CPU (every thread's, user + system, from `/proc/<pid>/task/*/schedstat`; Linux only) \
         from `emit` sent to the last copy read, ÷ lines (or ÷ copies). Before issue 13 (lines matched \
         under one lock against every session × every pending request): 5,000 idle sessions, 300 pending \
         calls, 2,000 lines took 20 s of host CPU (10 ms per line) and stalled another session's echo 17.9 s."
    );
    println!(
        "² `tools/call echo` from another session once the first line reached the watcher; the child reads it \
         after writing its last line, so it waits for the host to read the rest."
    );
    print_errors(errors.iter());
    println!();
    let median = |m: &Option<Median>, value: fn(&Run) -> Option<f64>| m.as_ref()?.of(value);
    let idle_ratio = ratio(
        median(idle, Run::cpu_per_line),
        median(base, Run::cpu_per_line),
    );
    let copy_ratio = ratio(
        median(busy, Run::cpu_per_copy),
        median(base, Run::cpu_per_copy),
    );
    let checks = [
        (
            "idle sessions cost nothing per line",
            idle_ratio.map(|r| r <= TARGET_IDLE_RATIO),
            format!(
                "{} vs ≤ {TARGET_IDLE_RATIO:.0}× one session",
                show_ratio(idle_ratio)
            ),
        ),
        (
            "a line costs per session that wants it",
            copy_ratio.map(|r| r <= TARGET_COPY_RATIO),
            format!(
                "per copy {} vs ≤ {TARGET_COPY_RATIO:.0}× one session",
                show_ratio(copy_ratio)
            ),
        ),
    ];
    let met = checks.iter().filter(|c| c.1 == Some(true)).count();
    let details: Vec<String> = checks
        .iter()
        .map(|(name, m, detail)| format!("{name} {} ({detail})", verdict(*m)))
        .collect();
    println!(
        "**Log routing targets met: {met}/{}** — host CPU per line at {} sessions: {} (1 wanting), {} ({wanted} wanting) — {} — log bench took {:.0} s",
        checks.len(),
        crowd.sessions,
        cell_value(median(idle, Run::cpu_per_line), Unit::Time),
        cell_value(median(busy, Run::cpu_per_line), Unit::Time),
        details.join("; "),
        elapsed.as_secs_f64()
    );
}
