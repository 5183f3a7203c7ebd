//! `[central_server]`: where the central server is (`HOST:PORT`, `http://` or `https://`),
//! how its certificate is checked, where the operator's token comes from, and the checks on
//! all of it. Dialling and reading the token file are the central client's business
//! (`crate::central`); this module only parses and validates.

use super::{Config, ConfigError, Source};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[central_server]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CentralSection {
    /// `HOST:PORT` or `http://HOST:PORT` (plaintext: the token travels unencrypted) or
    /// `https://HOST:PORT` (TLS); empty for standalone mode.
    pub address: String,
    /// Seconds between heartbeats.
    pub heartbeat_interval_seconds: u64,
    /// Seconds before the first reconnection attempt; later attempts back off
    /// exponentially (with jitter), staying at most 10 s for the first minute (the server
    /// marks a node offline after 30 s), then up to 5 minutes.
    pub reconnect_delay_seconds: u64,
    /// Seconds between checks that the server still knows the node
    /// (`NodeDiscoveryService/GetNodeInfo`; its heartbeats succeed even for a node it has
    /// forgotten): NOT_FOUND registers the node again at once (5..=3600).
    pub registration_check_seconds: u64,
    /// The operator's CyxWiz account token (a JWT), sent as `authorization: Bearer`;
    /// `CYXWIZ_AUTH_TOKEN` overrides it. Never shown by `config show`.
    pub auth_token: String,
    /// A file holding the token instead (read at start, surrounding whitespace trimmed; keep
    /// it mode 0600). `CYXWIZ_AUTH_TOKEN` overrides it; not together with `auth_token`.
    pub auth_token_file: PathBuf,
    /// With an `https://` address: PEM CA certificates to trust instead of the system's
    /// trust store (a private CA). Empty: the system's roots.
    pub ca_file: PathBuf,
    /// With an `https://` address: the name the server's certificate must carry (also sent
    /// as SNI), when it differs from the address's host. Empty: the host.
    pub tls_server_name: String,
    /// IP address the central server should dial this node at; empty = the local address of
    /// the route to the central server.
    pub advertise_address: String,
}

impl Default for CentralSection {
    fn default() -> Self {
        Self {
            address: String::new(),
            heartbeat_interval_seconds: 10,
            reconnect_delay_seconds: 5,
            registration_check_seconds: 60,
            auth_token: String::new(),
            auth_token_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            tls_server_name: String::new(),
            advertise_address: String::new(),
        }
    }
}

/// A parsed `central_server.address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CentralAddress {
    /// `https://`: the link is TLS.
    pub tls: bool,
    /// Host name or IP address; IPv6 addresses keep their brackets.
    pub host: String,
    /// Port.
    pub port: u16,
}

const ADDRESS_FORMS: &str = "HOST:PORT, http://HOST:PORT or https://HOST:PORT";

impl CentralAddress {
    /// Parses `HOST:PORT`, `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is
    /// allowed; paths, users and other schemes are not).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            || format!("must be {ADDRESS_FORMS} (or empty for standalone mode), got `{text}`");
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if text.contains("://") {
            return Err(bad());
        } else {
            (false, text)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(bad)?;
        let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        {
            inner.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        };
        if !host_ok {
            return Err(bad());
        }
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// The URI tonic dials: `http://HOST:PORT` or `https://HOST:PORT`.
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The host without IPv6 brackets: what the certificate is checked against by default.
    pub fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// Whether the host is this machine (`localhost`, 127.0.0.0/8, `::1`): traffic to it
    /// never leaves the machine.
    pub fn is_loopback(&self) -> bool {
        let host = self.bare_host();
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl Config {
    /// Checks `[central_server]` (all but `advertise_address`, checked with the network).
    pub(super) fn validate_central(&self) -> Result<(), ConfigError> {
        let section = &self.central_server;
        let tls = if section.address.is_empty() {
            false
        } else {
            CentralAddress::parse(&section.address)
                .map_err(|m| self.key_error("central_server.address", m))?
                .tls
        };
        for (key, value) in [
            (
                "heartbeat_interval_seconds",
                section.heartbeat_interval_seconds,
            ),
            ("reconnect_delay_seconds", section.reconnect_delay_seconds),
        ] {
            self.in_range(
                &format!("central_server.{key}"),
                value,
                1..=3600,
                " seconds",
            )?;
        }
        self.in_range(
            "central_server.registration_check_seconds",
            section.registration_check_seconds,
            5..=3600,
            " seconds",
        )?;
        for (key, set) in [
            ("ca_file", !section.ca_file.as_os_str().is_empty()),
            ("tls_server_name", !section.tls_server_name.is_empty()),
        ] {
            if set && !tls {
                return Err(self.key_error(
                    &format!("central_server.{key}"),
                    format!(
                        "applies only to an https:// address; make central_server.address \
                         `https://HOST:PORT` (got `{}`) or remove it",
                        section.address
                    ),
                ));
            }
        }
        let name = &section.tls_server_name;
        if !name.is_empty()
            && tokio_rustls::rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(self.key_error(
                "central_server.tls_server_name",
                format!("must be a DNS name or IP address, got `{name}`"),
            ));
        }
        let from_file = |key: &str| matches!(self.source(key), Source::File(_));
        if !section.auth_token.is_empty()
            && !section.auth_token_file.as_os_str().is_empty()
            && from_file("central_server.auth_token")
            && from_file("central_server.auth_token_file")
        {
            return Err(self.key_error(
                "central_server.auth_token_file",
                "set either auth_token or auth_token_file, not both".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(bool, String, u16), String> {
        CentralAddress::parse(text).map(|a| (a.tls, a.host, a.port))
    }

    #[test]
    fn addresses_take_three_forms() {
        assert_eq!(parse("central:50051"), Ok((false, "central".into(), 50051)));
        assert_eq!(
            parse("http://10.0.0.5:50051"),
            Ok((false, "10.0.0.5".into(), 50051))
        );
        assert_eq!(
            parse("https://central.example.com:443/"),
            Ok((true, "central.example.com".into(), 443))
        );
        assert_eq!(
            parse("https://[::1]:50051"),
            Ok((true, "[::1]".into(), 50051))
        );
        let a = CentralAddress::parse("https://[::1]:50051").unwrap();
        assert_eq!(a.uri(), "https://[::1]:50051");
        assert_eq!(a.bare_host(), "::1");
        for bad in [
            "central",
            "central:",
            ":50051",
            "central:0",
            "central:70000",
            "grpcs://central:50051",
            "https://central:50051/path",
            "https://user@central:50051",
            "::1:50051",
            "https://",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("https://HOST:PORT") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost:1",
            "127.0.0.1:1",
            "127.8.9.10:1",
            "http://[::1]:1",
        ] {
            assert!(CentralAddress::parse(host).unwrap().is_loopback(), "{host}");
        }
        for host in [
            "10.0.0.1:1",
            "central.example.com:1",
            "localhost.evil.com:1",
        ] {
            assert!(
                !CentralAddress::parse(host).unwrap().is_loopback(),
                "{host}"
            );
        }
    }

    fn config(central: CentralSection) -> Config {
        let mut config = Config {
            central_server: central,
            ..Config::default()
        };
        for key in ["auth_token", "auth_token_file"] {
            config.sources.insert(
                format!("central_server.{key}"),
                Source::File("config.toml".into()),
            );
        }
        config
    }

    #[test]
    fn tls_settings_without_https_are_refused() {
        // A CA file on a plaintext address would suggest a protection that is not there.
        let err = config(CentralSection {
            address: "central:50051".into(),
            ca_file: "ca.pem".into(),
            ..CentralSection::default()
        })
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("central_server.ca_file") && err.contains("https://"),
            "{err}"
        );
        let err = config(CentralSection {
            address: "http://central:50051".into(),
            tls_server_name: "central".into(),
            ..CentralSection::default()
        })
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("central_server.tls_server_name"), "{err}");
        let ok = config(CentralSection {
            address: "https://10.0.0.5:50051".into(),
            ca_file: "ca.pem".into(),
            tls_server_name: "central.internal".into(),
            ..CentralSection::default()
        });
        ok.validate().unwrap();
        let err = config(CentralSection {
            address: "https://10.0.0.5:50051".into(),
            tls_server_name: "not a name".into(),
            ..CentralSection::default()
        })
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("DNS name"), "{err}");
    }

    #[test]
    fn the_registration_check_interval_is_bounded() {
        for (seconds, ok) in [
            (4, false),
            (5, true),
            (60, true),
            (3600, true),
            (3601, false),
        ] {
            let result = config(CentralSection {
                address: "central:50051".into(),
                registration_check_seconds: seconds,
                ..CentralSection::default()
            })
            .validate();
            assert_eq!(result.is_ok(), ok, "{seconds}: {result:?}");
            if let Err(e) = result {
                let e = e.to_string();
                assert!(
                    e.contains("central_server.registration_check_seconds")
                        && e.contains("between 5 and 3600"),
                    "{e}"
                );
            }
        }
        assert_eq!(CentralSection::default().registration_check_seconds, 60);
    }

    #[test]
    fn with_a_central_server_the_assign_job_port_must_be_served() {
        let with_ports = |address: &str, ports: Vec<u16>| {
            let mut c = config(CentralSection {
                address: address.into(),
                ..CentralSection::default()
            });
            c.grpc.ports = ports;
            c.validate()
        };
        let err = with_ports("central:50051", vec![50052, 50053])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("grpc.ports")
                && err.contains("add 50055")
                && err.contains("ports = [50052, 50053, 50055]")
                && err.contains("--grpc-ports 50052,50053,50055")
                && !err.contains('\n'),
            "{err}"
        );
        with_ports("central:50051", vec![50052, 50055]).unwrap();
        // The defaults serve it; gRPC off and standalone mode need nothing.
        with_ports("central:50051", crate::config::GrpcSection::default().ports).unwrap();
        with_ports("central:50051", Vec::new()).unwrap();
        with_ports("", vec![50052]).unwrap();
    }

    #[test]
    fn a_token_and_a_token_file_in_the_same_file_conflict() {
        let both = CentralSection {
            auth_token: "jwt".into(),
            auth_token_file: "token".into(),
            ..CentralSection::default()
        };
        let err = config(both.clone()).validate().unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
        // CYXWIZ_AUTH_TOKEN overriding a configured file is no conflict.
        let mut env = config(both);
        env.sources.insert(
            "central_server.auth_token".into(),
            Source::Env("CYXWIZ_AUTH_TOKEN".into()),
        );
        env.validate().unwrap();
    }
}
