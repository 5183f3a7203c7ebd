//! The `NodeInfo` this node sends with RegisterNode and every heartbeat: identity, hardware,
//! address, formats and runtimes from the plugin registry, the operator's prices, and the
//! uptime figure the caller computed (`super::uptime`).

use crate::{config::Config, devices::Inventory, plugins::Registry};
use cyxwiz_proto::protocol::{
    node_pricing::BillingModel, DeviceCaps, DeviceType, NodeInfo, NodePricing, Version,
};
use std::{net::IpAddr, sync::Arc};

/// Where the fields of `NodeInfo` come from.
pub struct InfoSources {
    /// The effective configuration.
    pub config: Config,
    /// Plugins: `supported_formats` and `available_runtimes`.
    pub registry: Arc<Registry>,
    /// The hardware probed at start.
    pub inventory: Arc<Inventory>,
    /// Request metrics and the latest system sample (RAM available now).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The address the central server should dial: the configured advertise address, else the
/// gRPC listen address if it is a specific one, else the local address of the route to the
/// central server.
pub async fn advertised_ip(config: &Config) -> String {
    if !config.central_server.advertise_address.is_empty() {
        return config.central_server.advertise_address.clone();
    }
    if let Ok(ip) = config.grpc.host.parse::<IpAddr>() {
        if !ip.is_unspecified() {
            return ip.to_string();
        }
    }
    let route = async {
        let central = crate::config::CentralAddress::parse(&config.central_server.address).ok()?;
        let target = format!("{}:{}", central.host, central.port);
        let addr = tokio::net::lookup_host(&target).await.ok()?.next()?;
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = std::net::UdpSocket::bind(bind).ok()?;
        socket.connect(addr).ok()?;
        Some(socket.local_addr().ok()?.ip().to_string())
    };
    route.await.unwrap_or_else(|| "127.0.0.1".to_string())
}

fn version() -> Version {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<i32>().unwrap_or(0));
    Version {
        major: parts.next().unwrap_or(0),
        minor: parts.next().unwrap_or(0),
        patch: parts.next().unwrap_or(0),
        build: format!("cyxwiz-node-rs {}", env!("CARGO_PKG_VERSION")),
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The device list: the CPU, then each NVIDIA GPU NVML reported.
pub fn devices(inventory: &Inventory, ram_available: u64) -> Vec<DeviceCaps> {
    let mut list = vec![DeviceCaps {
        device_type: DeviceType::DeviceCpu as i32,
        device_name: inventory.cpu_model.clone(),
        memory_total: as_i64(inventory.ram_total_bytes),
        memory_available: as_i64(ram_available),
        compute_units: i32::try_from(inventory.cpu_cores).unwrap_or(i32::MAX),
        supports_fp64: true,
        supports_fp16: false,
        ..Default::default()
    }];
    for gpu in &inventory.gpus {
        list.push(DeviceCaps {
            device_type: DeviceType::DeviceCuda as i32,
            device_name: gpu.name.clone(),
            memory_total: as_i64(gpu.memory_total_bytes),
            memory_available: as_i64(gpu.memory_free_bytes),
            compute_units: 0,
            supports_fp64: true,
            supports_fp16: true,
            gpu_model: gpu.name.clone(),
            vram_total: as_i64(gpu.memory_total_bytes),
            vram_available: as_i64(gpu.memory_free_bytes),
            driver_version: gpu.driver_version.clone(),
            cuda_version: gpu.cuda_version.clone(),
            pcie_generation: gpu
                .pcie_generation
                .and_then(|g| i32::try_from(g).ok())
                .unwrap_or(0),
            pcie_lanes: gpu
                .pcie_lanes
                .and_then(|l| i32::try_from(l).ok())
                .unwrap_or(0),
            compute_capability: gpu.compute_capability.unwrap_or(0.0),
        });
    }
    list
}

fn pricing(config: &Config) -> NodePricing {
    let p = &config.pricing;
    let billing = match p.billing_model.as_str() {
        "per_epoch" => BillingModel::BillingPerEpoch,
        "per_job" => BillingModel::BillingPerJob,
        "per_inference" => BillingModel::BillingPerInference,
        _ => BillingModel::BillingHourly,
    };
    NodePricing {
        billing_model: billing as i32,
        price_per_hour: p.price_per_hour,
        price_per_epoch: p.price_per_epoch,
        price_per_job_base: p.price_per_job_base,
        price_per_inference: p.price_per_inference,
        minimum_charge: p.minimum_charge,
        minimum_duration_minutes: i32::try_from(p.minimum_duration_minutes).unwrap_or(i32::MAX),
        discount_1h_plus: p.discount_1h_plus,
        discount_24h_plus: p.discount_24h_plus,
        discount_bulk: p.discount_bulk,
        usd_equivalent: p.price_per_hour,
        price_updated_at: 0,
        accepts_cyxwiz_token: p.accepts_cyxwiz_token,
        accepts_sol: p.accepts_sol,
        accepts_usdc: p.accepts_usdc,
        free_tier_available: p.free_tier_minutes > 0,
        free_tier_minutes: i32::try_from(p.free_tier_minutes).unwrap_or(i32::MAX),
    }
}

/// Builds the node's `NodeInfo` as of now; `ip` is the advertised address
/// ([`advertised_ip`], resolved once per connection), `uptime_percentage` the node's share of
/// time up (`super::uptime`).
pub fn node_info(
    sources: &InfoSources,
    node_id: &str,
    ip: &str,
    uptime_percentage: f64,
) -> NodeInfo {
    let config = &sources.config;
    let inventory = &sources.inventory;
    let ram_available = sources
        .metrics
        .system()
        .map(|s| s.ram_total_bytes.saturating_sub(s.ram_used_bytes))
        .unwrap_or(inventory.ram_available_bytes);
    let mut formats: Vec<String> = Vec::new();
    let mut runtimes: Vec<String> = Vec::new();
    for plugin in sources.registry.loaded() {
        let meta = plugin.metadata();
        runtimes.push(format!("{} {}", meta.name, meta.version));
        for (format, _) in &meta.formats {
            if !formats.contains(format) {
                formats.push(format.clone());
            }
        }
    }
    let max_model = if config.devices.max_ram_mb > 0 {
        config.devices.max_ram_mb << 20
    } else {
        inventory.ram_total_bytes
    };
    NodeInfo {
        node_id: node_id.to_string(),
        name: config.node.name.clone(),
        version: Some(version()),
        devices: devices(inventory, ram_available),
        cpu_cores: i32::try_from(inventory.cpu_cores).unwrap_or(i32::MAX),
        ram_total: as_i64(inventory.ram_total_bytes),
        ram_available: as_i64(ram_available),
        ip_address: ip.to_string(),
        port: config.grpc.ports.first().map_or(0, |p| i32::from(*p)),
        region: config.node.region.clone(),
        wallet_address: config.node.wallet_address.clone(),
        is_online: true,
        last_heartbeat: i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
        .unwrap_or(0),
        supported_formats: formats,
        max_model_size: as_i64(max_model),
        supports_terminal_access: false,
        available_runtimes: runtimes,
        pricing: Some(pricing(config)),
        uptime_percentage,
        ..Default::default()
    }
}
