//! Process signals: what Claude Code sends and what the proxy makes of it.
//!
//! Claude Code sends SIGINT to the MCP servers of a session when another one
//! starts; a shared daemon must not die of that, so the proxy ignores SIGINT
//! before `main` (a load-time constructor, on Linux and macOS) and again as
//! the first instruction of `main`. SIGTERM and SIGHUP (and on Windows a console
//! close) end a session cleanly.

/// Ignores SIGINT (Ctrl+C on Windows) for the whole process, at once.
/// Call it first thing in `main`, before any runtime or thread exists.
#[cfg(unix)]
#[expect(unsafe_code, reason = "signal(2) has no safe wrapper in std")]
pub fn ignore_interrupt() {
    // SAFETY: SIG_IGN is a valid disposition for SIGINT, and no other thread
    // exists yet that could race on the disposition.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// [`ignore_interrupt`] with the C ABI, for a load-time constructor: the
/// binary puts it in `.init_array` (Linux) or `__mod_init_func` (macOS), so
/// the dynamic loader runs it before `main`, right after the libraries'
/// own initialisers. What remains open is exec → loader → constructors.
#[cfg(unix)]
pub extern "C" fn ignore_interrupt_at_load() {
    ignore_interrupt();
}

/// Ignores SIGINT (Ctrl+C on Windows) for the whole process, at once.
#[cfg(not(unix))]
pub fn ignore_interrupt() {
    // Windows: the console handler installed by `log_ignored_interrupts`
    // swallows Ctrl+C; there is nothing to do before the runtime exists.
}

/// Logs each SIGINT that arrives (and keeps ignoring it). Needs a runtime.
pub fn log_ignored_interrupts() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut interrupts) = signal(SignalKind::interrupt()) {
            tokio::spawn(async move {
                while interrupts.recv().await.is_some() {
                    tracing::info!("SIGINT ignored: the shared daemon stays up");
                }
            });
        }
    }
    #[cfg(windows)]
    {
        if let Ok(mut interrupts) = tokio::signal::windows::ctrl_c() {
            tokio::spawn(async move {
                while interrupts.recv().await.is_some() {
                    tracing::info!("Ctrl+C ignored: the shared daemon stays up");
                }
            });
        }
    }
}

/// Resolves when the process is asked to terminate: SIGTERM or SIGHUP
/// (Unix), console close or shutdown (Windows).
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!("cannot listen for SIGTERM/SIGHUP; only EOF ends the session");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::debug!("SIGTERM"),
            _ = hup.recv() => tracing::debug!("SIGHUP"),
        }
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_close, ctrl_shutdown};
        let (Ok(mut close), Ok(mut shutdown)) = (ctrl_close(), ctrl_shutdown()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = close.recv() => {}
            _ = shutdown.recv() => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    std::future::pending::<()>().await;
}

/// Resolves when the manager is asked to stop: SIGINT or SIGTERM (Unix),
/// Ctrl+C elsewhere. SIGHUP does not stop it: it reloads the config
/// ([`Hangups`]), as daemons do.
pub async fn interrupted_or_terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot listen for SIGINT/SIGTERM");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping");
}

/// Each SIGHUP (Unix; never elsewhere): the manager's "reload".
#[derive(Debug)]
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Listens from now on (a SIGHUP before this would end the process).
    pub fn new() -> Hangups {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP"))
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// The next SIGHUP.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

impl Default for Hangups {
    fn default() -> Hangups {
        Hangups::new()
    }
}

/// Resolves when a foreground command is asked to stop: SIGINT, SIGTERM or
/// SIGHUP (Unix), Ctrl+C elsewhere. For the manager and the host, which,
/// unlike the proxy, do stop on Ctrl+C.
pub async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut int) = signal(SignalKind::interrupt()) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            () = terminated() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("stopping");
}
