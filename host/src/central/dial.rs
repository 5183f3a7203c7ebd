//! How the node reaches the central server: the address scheme decides plaintext or TLS (the
//! system's roots, or `ca_file` for a private CA, with an optional `tls_server_name`), the
//! operator's token is taken from the environment, the flag, `auth_token_file` or the config
//! file, and the warnings an operator should see once at start (a token on the command line, a
//! token file others can read, a token sent in clear beyond this machine).
//!
//! The session logic (register, heartbeat, backoff) stays in `super`; this module only
//! produces a connected, authenticated client.

use crate::config::{CentralAddress, Config, Source};
use cyxwiz_proto::protocol::{
    node_discovery_service_client::NodeDiscoveryServiceClient,
    node_service_client::NodeServiceClient,
};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
use tonic::{
    metadata::MetadataValue,
    service::Interceptor,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

/// Why the central link could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    /// `central_server.address` is malformed (normally caught by config validation).
    #[error("central_server.address: {0}")]
    Address(String),
    /// The token file could not be read.
    #[error("central_server.auth_token_file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file holds nothing but whitespace.
    #[error("central_server.auth_token_file {path}: the file is empty; put the CyxWiz account token in it")]
    EmptyTokenFile {
        /// The file.
        path: PathBuf,
    },
    /// The CA file is missing or holds no PEM certificate.
    #[error("central_server.ca_file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// TLS could not be configured (e.g. no system trust store).
    #[error("TLS to the central server at {address}: {message}")]
    Tls {
        /// The configured address.
        address: String,
        /// Why.
        message: String,
    },
}

/// Adds the operator's bearer token to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A NodeService client that sends the bearer token.
pub(super) type Client =
    NodeServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// A NodeDiscoveryService client (served without authentication, so sent no token).
pub(super) type Discovery = NodeDiscoveryServiceClient<Channel>;

/// A configured way to dial the central server: the endpoint (with its TLS connector, built
/// once at start so a bad CA file or a missing trust store stops the node there).
#[derive(Clone, Debug)]
pub struct Dialer {
    address: String,
    endpoint: Endpoint,
}

impl Dialer {
    /// The endpoint for `config`'s `[central_server]`; `None` in standalone mode.
    pub fn new(config: &Config) -> Result<Option<Self>, CentralError> {
        let section = &config.central_server;
        if section.address.is_empty() {
            return Ok(None);
        }
        let parsed = CentralAddress::parse(&section.address).map_err(CentralError::Address)?;
        let tls_error = |message: String| CentralError::Tls {
            address: section.address.clone(),
            message,
        };
        let mut endpoint = Endpoint::from_shared(parsed.uri())
            .map_err(|e| CentralError::Address(source_chain(&e)))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        if parsed.tls {
            let mut tls = ClientTlsConfig::new().timeout(Duration::from_secs(10));
            tls = if section.ca_file.as_os_str().is_empty() {
                tls.with_native_roots()
            } else {
                tls.ca_certificate(read_ca_file(&config.resolve(&section.ca_file))?)
            };
            if !section.tls_server_name.is_empty() {
                tls = tls.domain_name(section.tls_server_name.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                let mut message = source_chain(&e);
                if message.contains("no native certs") {
                    message = "no CA certificates in the system trust store; install them \
                               (e.g. the ca-certificates package) or set [central_server] ca_file"
                        .into();
                }
                tls_error(message)
            })?;
        }
        Ok(Some(Self {
            address: section.address.clone(),
            endpoint,
        }))
    }

    /// Connects and wraps the channel in a client that sends `token` as a bearer token, and a
    /// NodeDiscoveryService client on the same connection.
    pub(super) async fn connect(&self, token: &str) -> Result<(Client, Discovery), String> {
        let bearer = if token.is_empty() {
            None
        } else {
            Some(format!("Bearer {token}").parse().map_err(|_| {
                "the auth token contains characters not allowed in a header".to_string()
            })?)
        };
        let channel = self.endpoint.connect().await.map_err(|e| {
            format!(
                "cannot reach the central server at {}: {}",
                self.address,
                source_chain(&e)
            )
        })?;
        Ok((
            NodeServiceClient::with_interceptor(channel.clone(), Bearer(bearer)),
            NodeDiscoveryServiceClient::new(channel),
        ))
    }
}

impl Dialer {
    /// A lazily connected channel to the central server that sends `token` as a bearer
    /// token, for any of its services' clients (`JobStatusServiceClient::new(channel)`); it
    /// dials on first use and again after a failure.
    pub fn channel(
        &self,
        token: &str,
    ) -> Result<tonic::service::interceptor::InterceptedService<Channel, Bearer>, String> {
        let bearer = if token.is_empty() {
            None
        } else {
            Some(format!("Bearer {token}").parse().map_err(|_| {
                "the auth token contains characters not allowed in a header".to_string()
            })?)
        };
        Ok(tonic::service::interceptor::InterceptedService::new(
            self.endpoint.connect_lazy(),
            Bearer(bearer),
        ))
    }
}

/// Reads PEM CA certificates, refusing a file with none.
fn read_ca_file(path: &Path) -> Result<Certificate, CentralError> {
    let error = |message: String| CentralError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in the file".into()));
    }
    Ok(Certificate::from_pem(pem))
}

/// Settles the operator's token and returns the warnings to log once at start.
///
/// Precedence: `CYXWIZ_AUTH_TOKEN` / `--auth-token` > `auth_token_file` > `auth_token`. The
/// token read from a file replaces `central_server.auth_token` in `config`, so the session
/// code reads one place.
pub fn settle_token(config: &mut Config) -> Result<Vec<String>, CentralError> {
    let mut warnings = Vec::new();
    let token_source = config.source("central_server.auth_token");
    if matches!(token_source, Source::Flag(_)) {
        warnings.push(
            "--auth-token puts the token on the command line, where other users of this machine \
             can read it (ps, /proc); set CYXWIZ_AUTH_TOKEN or [central_server] auth_token_file \
             instead"
                .to_string(),
        );
    }
    let file = &config.central_server.auth_token_file;
    let overridden = matches!(token_source, Source::Flag(_) | Source::Env(_));
    if !file.as_os_str().is_empty() && !overridden {
        // A path from the config file is relative to it; one from a flag or the environment
        // to the working directory.
        let path = match config.source("central_server.auth_token_file") {
            Source::File(_) => config.resolve(file),
            _ => file.clone(),
        };
        let (token, warning) = read_token_file(&path)?;
        warnings.extend(warning);
        config.central_server.auth_token = token;
        config
            .sources
            .insert("central_server.auth_token".into(), Source::File(path));
    }
    Ok(warnings)
}

/// Reads a token file: the token, trimmed, and a warning when others may read the file.
pub fn read_token_file(path: &Path) -> Result<(String, Option<String>), CentralError> {
    let read_error = |source| CentralError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_error)?
        .permissions()
        .mode();
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CentralError::EmptyTokenFile {
            path: path.to_path_buf(),
        });
    }
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "the token file {} has mode {:04o}: other users may read it; run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        )
    });
    Ok((token.to_string(), warning))
}

/// The warning for an address whose traffic, token included, crosses the network in clear.
pub fn plaintext_warning(address: &str) -> Option<String> {
    let parsed = CentralAddress::parse(address).ok()?;
    (!parsed.tls && !parsed.is_loopback()).then(|| {
        format!(
            "the central server address {address} is plaintext: the auth token and the node's \
             registration travel unencrypted; use https://{}:{} if the server speaks TLS",
            parsed.host, parsed.port
        )
    })
}

/// An error with its causes, `: `-separated (tonic's own message is only "transport error").
pub(super) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn with_source(key: &str, source: Source) -> Config {
        let mut config = Config::default();
        config
            .sources
            .insert(format!("central_server.{key}"), source);
        config
    }

    #[test]
    fn a_token_on_the_command_line_is_warned_about() {
        let mut config = with_source("auth_token", Source::Flag("--auth-token".into()));
        config.central_server.auth_token = "jwt".into();
        let warnings = settle_token(&mut config).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("other users") && warnings[0].contains("CYXWIZ_AUTH_TOKEN"),
            "{warnings:?}"
        );
        // The environment is not visible to other users: no warning.
        let mut config = with_source("auth_token", Source::Env("CYXWIZ_AUTH_TOKEN".into()));
        config.central_server.auth_token = "jwt".into();
        assert!(settle_token(&mut config).unwrap().is_empty());
    }

    #[test]
    fn the_token_file_is_read_trimmed_and_its_mode_checked() {
        let dir = tempfile::tempdir().unwrap();
        let private = write(dir.path(), "token", "  eyJ.private.sig\n\n", 0o600);
        let mut config = with_source("auth_token_file", Source::Flag("--auth-token-file".into()));
        config.central_server.auth_token_file = private.clone();
        assert!(settle_token(&mut config).unwrap().is_empty());
        assert_eq!(config.central_server.auth_token, "eyJ.private.sig");
        assert_eq!(
            config.source("central_server.auth_token"),
            Source::File(private)
        );

        // Group- or world-readable: still used, with a warning naming the fix.
        let open = write(dir.path(), "open", "eyJ.open.sig", 0o644);
        let (token, warning) = read_token_file(&open).unwrap();
        assert_eq!(token, "eyJ.open.sig");
        let warning = warning.unwrap();
        assert!(
            warning.contains("0644") && warning.contains("chmod 600"),
            "{warning}"
        );
        let group = write(dir.path(), "group", "eyJ.group.sig", 0o640);
        assert!(read_token_file(&group).unwrap().1.is_some());

        let empty = write(dir.path(), "empty", " \n", 0o600);
        let err = read_token_file(&empty).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = read_token_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth_token_file") && err.contains("missing"),
            "{err}"
        );
    }

    #[test]
    fn the_environment_overrides_the_token_file() {
        let mut config = with_source("auth_token", Source::Env("CYXWIZ_AUTH_TOKEN".into()));
        config.central_server.auth_token = "from-env".into();
        // Never read: a missing file is no error when the environment carries the token.
        config.central_server.auth_token_file = "/nonexistent/token".into();
        settle_token(&mut config).unwrap();
        assert_eq!(config.central_server.auth_token, "from-env");
    }

    #[test]
    fn plaintext_beyond_loopback_is_warned_about() {
        for address in ["central.example.com:50051", "http://10.1.2.3:50051"] {
            let warning = plaintext_warning(address).unwrap();
            assert!(
                warning.contains("unencrypted") && warning.contains("https://"),
                "{warning}"
            );
        }
        for address in [
            "127.0.0.1:50051",
            "http://localhost:50051",
            "https://central:443",
        ] {
            assert_eq!(plaintext_warning(address), None, "{address}");
        }
    }

    #[tokio::test]
    async fn tls_settings_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        assert!(Dialer::new(&config).unwrap().is_none(), "standalone");
        config.central_server.address = "https://127.0.0.1:1".into();
        config.central_server.ca_file = write(dir.path(), "ca.pem", "not a certificate", 0o644);
        let err = Dialer::new(&config).unwrap_err().to_string();
        assert!(
            err.contains("ca_file") && err.contains("no PEM certificate"),
            "{err}"
        );
        config.central_server.ca_file = dir.path().join("missing.pem");
        let err = Dialer::new(&config).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        config.central_server.address = "http://127.0.0.1:1".into();
        config.central_server.ca_file = PathBuf::new();
        assert!(Dialer::new(&config).unwrap().is_some());
    }
}
