//! `mcp-manager host NAME`: serve the stdio server of a config entry to many
//! sessions on its port (and, on Unix, on `sockets/NAME.sock`), in the
//! foreground, until `stop`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError, TransportKind};
use crate::host::{self, HostOptions, SupervisionTiming};
use crate::http::server::socket;
use crate::paths;

/// Why the entry cannot be hosted. Each message names the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("unknown daemon {name:?}; configured: {configured}")]
    Unknown { name: String, configured: String },
    #[error(
        "{name} is a {transport} server, not a stdio one: it serves HTTP itself and needs no host (see {source_file})"
    )]
    NotStdio {
        name: String,
        transport: TransportKind,
        source_file: String,
    },
    #[error("{name} needs a \"command\" and a \"port\" to be hosted (see {source_file})")]
    Incomplete { name: String, source_file: String },
    #[error("cannot create {}", path.display())]
    CreateHome {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr}: is {name} already hosted (curl http://{addr}/health), or does another program hold the port? Change \"port\" in {source_file} if so"
    )]
    Bind {
        addr: SocketAddr,
        name: String,
        source_file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Hosts `name` from `home`'s config until `stop` resolves.
///
/// # Errors
/// [`HostError`]: the config, the entry, the home or the port.
pub async fn host(
    home: &Path,
    name: &str,
    stop: impl Future<Output = ()>,
) -> Result<(), HostError> {
    let config = Config::load(home)?;
    let Some(server) = config.servers.get(name) else {
        return Err(HostError::Unknown {
            name: name.to_owned(),
            configured: config.names().join(", "),
        });
    };
    let source_file = config.source.as_ref().map_or_else(
        || "the built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    if server.transport != TransportKind::Stdio {
        return Err(HostError::NotStdio {
            name: name.to_owned(),
            transport: server.transport,
            source_file,
        });
    }
    let (Some(command), Some(port)) = (server.command.clone(), server.port) else {
        return Err(HostError::Incomplete {
            name: name.to_owned(),
            source_file,
        });
    };
    crate::paths::create_private_dir(home).map_err(|source| HostError::CreateHome {
        path: home.to_owned(),
        source,
    })?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HostError::Bind {
            addr,
            name: name.to_owned(),
            source_file,
            source,
        })?;
    let options = HostOptions {
        name: name.to_owned(),
        port,
        scope: server.scope,
        command,
        args: server.args.clone(),
        env: server.env.clone(),
        cwd: server.cwd.clone(),
        log: paths::log_file(home, name),
        home: home.to_owned(),
        timing: SupervisionTiming {
            ping_timeout: server.ping_timeout,
            ping_every: (server.ping_timeout / 3)
                .clamp(Duration::from_millis(200), Duration::from_secs(10)),
            ..SupervisionTiming::default()
        },
        session_timeout: server.session_timeout,
        max_children: server.max_children,
    };
    // After the port (which only one host of it can hold), before serving:
    // a proxy that sees the port answer finds the socket there too.
    let unix = socket::bind(&paths::host_socket(home, name));
    let socket_shown = unix.as_ref().map(|_| paths::host_socket(home, name));
    tracing::info!(name, %addr, socket = ?socket_shown, scope = ?server.scope, "hosting");
    host::run(options, listener, unix, stop).await;
    Ok(())
}
