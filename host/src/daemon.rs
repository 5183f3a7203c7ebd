//! `cyxwiz-node run`: prepares the data directory, opens the store, probes the hardware,
//! discovers plugins, starts serving HTTP, gRPC and the control socket at once, samples system
//! metrics, joins the central server when one is configured, loads the configured deployments
//! in the background, and stops cleanly on Ctrl-C or SIGTERM.

use crate::{
    central::{self, CentralLink},
    config::Config,
    deployments::Deployments,
    devices::{Gpus, Inventory},
    grpc::{self, GrpcState},
    metrics::sampler::{run_sampler, MetricsSettings},
    plugins::{search_dirs, PluginState, Registry},
    server::{self, auth, control, tls, AppState},
    store::{Store, StoreError},
};
use std::{
    future::{Future, IntoFuture},
    path::PathBuf,
    sync::Arc,
};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A directory could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Creates the data directory layout: `models/`, `plugins/`, `jobs/`, `logs/`.
pub fn prepare_data_dir(config: &Config) -> Result<(), DaemonError> {
    for dir in ["", "models", "plugins", "jobs", "logs"] {
        let path = config.data_dir.join(dir);
        std::fs::create_dir_all(&path).map_err(|source| DaemonError::DataDir { path, source })?;
    }
    Ok(())
}

/// Discovers plugins from the configured directories.
pub fn discover_plugins(config: &Config) -> Registry {
    Registry::discover(
        &search_dirs(
            &config
                .plugins
                .dirs
                .iter()
                .map(|d| config.resolve(d))
                .collect::<Vec<_>>(),
            &config.plugins_dir(),
        ),
        config.plugins.preference.clone(),
    )
    .with_runtime_options(
        config
            .runtimes
            .iter()
            .map(|(plugin, table)| {
                let json = serde_json::to_value(table)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                (plugin.clone(), json)
            })
            .collect(),
    )
}

/// Runs the node until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    prepare_data_dir(&config)?;
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
    let loaded = registry.entries().len() - failed;
    tracing::info!(loaded, failed, "plugins discovered");

    let deployments = Arc::new(Deployments::from_config(&config));
    let auth_required = config.api.auth_required();
    if auth_required && store.list_keys()?.iter().all(|k| k.revoked_at.is_some()) {
        tracing::warn!(
            "the API requires keys but none exists; create one with `cyxwiz-node keys create --name NAME`"
        );
    }
    let metrics: Arc<crate::metrics::Metrics> = Arc::default();
    let state = Arc::new(AppState {
        node_name: config.node.name.clone(),
        central: central.clone(),
        grpc_ports: config.grpc.ports.clone(),
        deployments: deployments.clone(),
        registry: registry.clone(),
        store: std::sync::Mutex::new(store),
        metrics: metrics.clone(),
        limiter: auth::RateLimiter::default(),
        auth_required,
        plugins_loaded: loaded,
        plugins_failed: failed,
        started: std::time::Instant::now(),
    });

    let loader = {
        let deployments = deployments.clone();
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || deployments.load_pending(&registry))
    };

    // One shutdown signal for every server.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
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

    let config = Arc::new(config);
    // The HTTP port is bound first so gRPC answers can point at it.
    let http = if config.api.enabled {
        let addr = format!("{}:{}", config.api.host, config.api.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| DaemonError::Http {
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
    let grpc_done = if config.grpc.ports.is_empty() {
        tracing::info!("gRPC disabled ([grpc] ports = [])");
        None
    } else {
        let grpc_state = Arc::new(GrpcState {
            app: state.clone(),
            config: config.clone(),
            inventory: inventory.clone(),
            endpoint_url,
        });
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

    let client = if config.central_server.address.is_empty() {
        tracing::info!("standalone mode: no central server configured");
        None
    } else {
        if config.grpc.ports.is_empty() {
            tracing::warn!("gRPC is off, so the central server cannot assign jobs to this node");
        }
        Some(tokio::spawn(central::run(
            central::ClientContext {
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
    };

    let socket = control::socket_path(&config.data_dir);
    let control_listener = control::bind(&socket).map_err(|source| DaemonError::Http {
        addr: socket.display().to_string(),
        source,
    })?;
    let control_server = tokio::spawn(
        axum::serve(control_listener, control::router(state.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );

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
            let listener =
                tls::TlsListener::new(listener, tls).map_err(|source| DaemonError::Http {
                    addr: bound.clone(),
                    source,
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
    if let Some(done) = grpc_done {
        let _ = done.await;
    }
    if let Some(client) = client {
        let _ = client.await;
    }
    let _ = sampler.await;
    loader.abort();
    tracing::info!("stopped");
    Ok(())
}
