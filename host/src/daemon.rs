//! `cyxwiz-node run`: prepares the data directory, opens the store, probes the hardware,
//! discovers plugins, starts serving HTTP, gRPC and the control socket at once, samples system
//! metrics, joins the central server when one is configured, loads the configured deployments
//! in the background, and stops cleanly on Ctrl-C or SIGTERM.

use crate::{
    central::{self, CentralLink},
    config::Config,
    control,
    deployments::Deployments,
    devices::{Gpus, Inventory},
    grpc::{self, GrpcState},
    metrics::sampler::{run_sampler, MetricsSettings},
    node::{self, Node},
    plugins::{search_dirs, PluginState, ProbeSettings, Registry},
    server::{self, tls},
    store::{Store, StoreError},
};
use std::{future::Future, path::PathBuf, sync::Arc};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A directory could not be created or made private.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job executor could not start.
    #[error("training jobs: {0}")]
    Jobs(#[from] crate::jobs::JobError),
    /// The P2P secret file is unusable.
    #[error("{0}")]
    P2p(#[from] crate::p2p::P2pError),
    /// The central-server link is misconfigured (token file, CA file, trust store).
    #[error(transparent)]
    Central(#[from] central::CentralError),
    /// gRPC could not start.
    #[error(transparent)]
    Grpc(#[from] grpc::GrpcError),
    /// The HTTP listener could not be bound or failed.
    #[error("HTTP API on {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Creates the data directory layout: `models/`, `plugins/`, `jobs/`, `logs/`, private to the
/// node's user. Directories it creates are 0700; an existing data directory this user owns
/// that others could enter is tightened to 0700 (the database, the control socket and job
/// files live there); one owned by another user is left as it is, with a warning.
pub fn prepare_data_dir(config: &Config) -> Result<(), DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::DataDir { path, source }
    };
    for dir in ["", "models", "plugins", "jobs", "logs"] {
        let path = config.data_dir.join(dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(error(&path))?;
    }
    let dir = &config.data_dir;
    let meta = std::fs::metadata(dir).map_err(error(dir))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() == me {
            let private = mode & !0o077;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(private))
                .map_err(error(dir))?;
            tracing::info!(
                data_dir = %dir.display(),
                "the data directory was mode {mode:04o}; made it private to this user ({private:04o})"
            );
        } else {
            tracing::warn!(
                data_dir = %dir.display(),
                owner_uid = meta.uid(),
                "the data directory belongs to another user and is mode {mode:04o}: other users may reach the database and the control socket"
            );
        }
    }
    Ok(())
}

/// Discovers plugins from the configured directories.
pub fn discover_plugins(config: &Config) -> Registry {
    let dirs = search_dirs(
        &config
            .plugins
            .dirs
            .iter()
            .map(|d| config.resolve(d))
            .collect::<Vec<_>>(),
        &config.plugins_dir(),
    );
    let runtimes = config
        .runtimes
        .iter()
        .map(|(plugin, table)| {
            let json = serde_json::to_value(table)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            (plugin.clone(), json)
        })
        .collect();
    let preference = config.plugins.preference.clone();
    // Metadata comes from a child process per library (cached), so that no plugin library
    // is mapped here before a model needs it.
    match ProbeSettings::for_data_dir(&config.data_dir) {
        Some(probe) => Registry::discover_probed(&dirs, preference, runtimes, &probe),
        None => {
            tracing::warn!(
                "cannot find the node binary to probe plugins with; opening them in process"
            );
            Registry::discover(&dirs, preference).with_runtime_options(runtimes)
        }
    }
}

/// Connections the kernel keeps waiting for `accept` on the HTTP port. The server accepts
/// at most `[api] max_connections` at once; beyond that, connections wait here rather than
/// overflowing tokio's default backlog of 128 (which makes clients retry their handshake after
/// 1 s and 3 s).
const HTTP_BACKLOG: u32 = 4096;

/// Raises the soft open-file limit towards the hard one (as servers commonly do; the default
/// soft limit of 1024 would end the node's accepts long before `[api] max_connections`) and
/// warns when the connections allowed could still exhaust it.
fn raise_open_files(max_connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok {
        return;
    }
    let wanted = limit.rlim_max.min(1 << 20);
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = wanted;
        }
    }
    // Models, plugins, the database and gRPC need descriptors too.
    let needed = max_connections as u64 + 512;
    if limit.rlim_cur < needed {
        tracing::warn!(
            open_files = limit.rlim_cur,
            max_connections,
            "the open-file limit is below [api] max_connections + 512; lower max_connections or raise the limit (ulimit -n)"
        );
    }
}

/// Binds the HTTP listener with [`HTTP_BACKLOG`].
async fn bind_http(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        format!("{addr} resolves to no address"),
    );
    for resolved in tokio::net::lookup_host(addr).await? {
        let socket = if resolved.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(resolved)
            .and_then(|()| socket.listen(HTTP_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Runs the node until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    prepare_data_dir(&config)?;
    let mut config = config;
    let dialer = central::prepare(&mut config)?;
    let store = Store::open(&config.database_path())?;
    let node_id = store.node_id()?;
    store.audit("node_started", &node_id, &config.node.name)?;
    tracing::info!(node = %config.node.name, id = %node_id, data_dir = %config.data_dir.display(), "starting");
    let central = Arc::new(CentralLink::new(node_id, &config.central_server.address));

    // NVML is probed once here; the sampler reuses the handle.
    let (gpus, inventory) = tokio::task::spawn_blocking(|| {
        let gpus = Arc::new(Gpus::init());
        let inventory = Inventory::probe_with(&gpus);
        (gpus, inventory)
    })
    .await
    .map_err(|e| DaemonError::Http {
        addr: "hardware probe".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let inventory = Arc::new(inventory);
    tracing::info!(
        cpu = %inventory.cpu_model,
        cores = inventory.cpu_cores,
        ram_mib = inventory.ram_total_bytes >> 20,
        gpus = inventory.gpus.len(),
        gpu_probe = %inventory.gpu_probe,
        "hardware"
    );

    let registry = Arc::new(discover_plugins(&config));
    let failed = registry
        .entries()
        .iter()
        .filter(|e| matches!(e.state, PluginState::Failed(_)))
        .count();
    tracing::info!(
        loaded = registry.entries().len() - failed,
        failed,
        "plugins discovered"
    );

    let deployments = Arc::new(Deployments::from_config(&config).with_devices(
        crate::deployments::device::DevicePool::new(&config.devices, &inventory),
    ));
    let auth_required = config.api.auth_required();
    let keyring = Arc::new(crate::access::keyring::Keyring::open(
        &config.database_path(),
    )?);
    let audit_log = Arc::new(
        crate::audit::AuditLog::start(
            config.database_path(),
            crate::audit::Retention {
                days: config.audit.retention_days,
                max_events: config.audit.max_events,
            },
        )
        .map_err(|source| DaemonError::Http {
            addr: "audit log writer".into(),
            source,
        })?,
    );
    if auth_required && !keyring.any() {
        tracing::warn!(
            "the API requires keys but none exists; create one with `cyxwiz-node keys create --name NAME`"
        );
    }
    let metrics: Arc<crate::metrics::Metrics> = Arc::default();
    // Job changes write reports for the central server only when one is configured.
    let mut jobs_store = Store::open(&config.database_path())?;
    jobs_store.write_reports(dialer.is_some());
    // The node's own connection queues the P2P reservation-end reports.
    let mut store = store;
    store.write_reports(dialer.is_some());
    let jobs = crate::jobs::Jobs::start(
        crate::jobs::Settings::for_config(&config),
        jobs_store,
        crate::jobs::training_backends(&registry),
    )?;
    let config = Arc::new(config);
    let state = Arc::new(Node::new(node::Parts {
        config: config.clone(),
        inventory: inventory.clone(),
        central: central.clone(),
        deployments: deployments.clone(),
        registry: registry.clone(),
        store,
        metrics: metrics.clone(),
        access: Arc::new(crate::access::Access::new(keyring.clone())),
        audit_log,
        jobs: jobs.clone(),
    }));

    let p2p = Arc::new(crate::p2p::P2p::new(
        state.clone(),
        &crate::p2p::secret(&config)?,
    ));

    let loader = {
        let deployments = deployments.clone();
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || deployments.load_pending(&registry))
    };

    // One shutdown signal for every server.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // Key use counts are kept in memory and written every 10 s and at shutdown.
    let usage = {
        let keyring = keyring.clone();
        let store = Arc::new(std::sync::Mutex::new(Store::open(&config.database_path())?));
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                let stopping = tokio::select! {
                    _ = tick.tick() => false,
                    _ = rx.wait_for(|s| *s) => true,
                };
                let (keyring, store) = (keyring.clone(), store.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = keyring.flush(&mut store) {
                        tracing::warn!(error = %e, "cannot record API key use; retrying later");
                    }
                })
                .await;
                if stopping {
                    return;
                }
            }
        })
    };

    let sampler = tokio::spawn(run_sampler(
        MetricsSettings {
            interval: std::time::Duration::from_secs(config.metrics.interval_seconds),
            retention: std::time::Duration::from_secs(config.metrics.retention_days * 86_400),
        },
        Store::open(&config.database_path())?,
        gpus,
        metrics.clone(),
        stop_rx.clone(),
    ));

    // The HTTP port is bound first so gRPC answers can point at it.
    let http = if config.api.enabled {
        let addr = format!("{}:{}", config.api.host, config.api.port);
        raise_open_files(config.api.max_connections);
        let listener = bind_http(&addr).await.map_err(|source| DaemonError::Http {
            addr: addr.clone(),
            source,
        })?;
        let bound = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(addr.clone());
        Some((listener, bound))
    } else {
        None
    };
    let endpoint_url = http.as_ref().map_or_else(String::new, |(_, bound)| {
        let scheme = if config.api.tls.enabled {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{bound}/v1")
    });
    let reports_base = endpoint_url.clone();
    let grpc_done = if config.grpc.ports.is_empty() {
        tracing::info!("gRPC disabled ([grpc] ports = [])");
        None
    } else {
        let grpc_state = Arc::new(GrpcState::new(state.clone(), endpoint_url, p2p.clone()));
        if grpc_state.auth_required {
            tracing::info!("API keys required on gRPC (AssignJob excepted)");
        } else {
            tracing::warn!("gRPC answers without API keys (loopback only; set [grpc] require_auth = true to require them)");
        }
        let (bound, done) = {
            let rx = stop_rx.clone();
            grpc::serve(grpc_state, move || stopped(rx.clone())).await?
        };
        let scheme = if config.grpc.tls.enabled {
            "grpcs"
        } else {
            "grpc"
        };
        for addr in &bound {
            tracing::info!("gRPC listening on {scheme}://{addr}");
        }
        Some(tokio::spawn(done))
    };

    let client = if let Some(dialer) = dialer {
        // Reports to the central server (job progress and results) from the outbox.
        let advertised = central::advertised_ip(&config).await;
        tokio::spawn(crate::reports::run(
            crate::reports::Reporter {
                database: config.database_path(),
                dialer: dialer.clone(),
                token: config.central_server.auth_token.clone(),
                link: central.clone(),
                weights_base: crate::reports::weights_base(&reports_base, &advertised),
            },
            stop_rx.clone(),
        ));
        if config.grpc.ports.is_empty() {
            tracing::warn!("gRPC is off, so the central server cannot assign jobs to this node");
        }
        Some(tokio::spawn(central::run(
            central::ClientContext {
                workload: Arc::new(crate::p2p::workload::NetworkWork {
                    jobs: jobs.clone(),
                    p2p: p2p.clone(),
                }),
                dialer,
                sources: central::InfoSources {
                    config: (*config).clone(),
                    registry: registry.clone(),
                    inventory: inventory.clone(),
                    metrics: metrics.clone(),
                },
                link: central.clone(),
                database: config.database_path(),
            },
            stop_rx.clone(),
        )))
    } else {
        tracing::info!("standalone mode: no central server configured");
        None
    };

    let socket = control::socket_path(&config.data_dir);
    let control_listener = control::bind(&socket).map_err(|source| DaemonError::Http {
        addr: socket.display().to_string(),
        source,
    })?;
    let control_server = tokio::spawn(control::serve(
        control_listener,
        control::peer::node_uid(),
        control::ControlService::new(control::ControlContext {
            node: state.clone(),
            logs: crate::logging::ring(),
            stop: stop_tx.clone(),
        }),
        stopped(stop_rx.clone()),
    ));

    if let Some((listener, bound)) = http {
        if auth_required {
            tracing::info!("API keys required on /v1");
        }
        let served = if config.api.tls.enabled {
            let tls = tls::server_config(
                &config.resolve(&config.api.tls.cert_path),
                &config.resolve(&config.api.tls.key_path),
            )
            .map_err(|e| DaemonError::Http {
                addr: bound.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let listener = tls::TlsListener::new(listener, tls, &config.api).map_err(|source| {
                DaemonError::Http {
                    addr: bound.clone(),
                    source,
                }
            })?;
            tracing::info!("listening on https://{bound}");
            server::serve(listener, stopped(stop_rx.clone()), state, &config.api).await
        } else {
            tracing::info!("listening on http://{bound}");
            server::serve(listener, stopped(stop_rx.clone()), state, &config.api).await
        };
        served.map_err(|source| DaemonError::Http {
            addr: bound,
            source,
        })?;
    } else {
        tracing::info!("HTTP API disabled ([api] enabled = false)");
        stopped(stop_rx.clone()).await;
    }
    let _ = control_server.await;
    let _ = std::fs::remove_file(&socket);
    // Running jobs checkpoint and stop; they resume after a restart (`[jobs] resume_after_restart`).
    {
        let jobs = jobs.clone();
        let _ =
            tokio::task::spawn_blocking(move || jobs.shutdown(crate::jobs::CANCEL_DEADLINE * 2))
                .await;
    }
    if let Some(done) = grpc_done {
        let _ = done.await;
    }
    if let Some(client) = client {
        let _ = client.await;
    }
    let _ = sampler.await;
    let _ = usage.await;
    loader.abort();
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_directory_is_private_to_the_user() {
        let root = tempfile::tempdir().unwrap();
        // A new data directory (and the parent created with it) is 0700, its layout too.
        let config = Config {
            data_dir: root.path().join("parent").join("node"),
            ..Config::default()
        };
        prepare_data_dir(&config).unwrap();
        assert_eq!(mode(&root.path().join("parent")), 0o700);
        for dir in ["", "models", "plugins", "jobs", "logs"] {
            assert_eq!(mode(&config.data_dir.join(dir)), 0o700, "{dir:?}");
        }

        // One an older node left 0755 is tightened; its contents are kept.
        let old = Config {
            data_dir: root.path().join("old"),
            ..Config::default()
        };
        std::fs::create_dir(&old.data_dir).unwrap();
        std::fs::write(old.data_dir.join("config.toml"), "").unwrap();
        std::fs::set_permissions(&old.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_data_dir(&old).unwrap();
        assert_eq!(mode(&old.data_dir), 0o700);
        assert!(old.data_dir.join("config.toml").is_file());
    }
}
