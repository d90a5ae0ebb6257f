//! Connecting to the broker with the configured settings, and saying clearly why it
//! failed: the part of publishing that `avscene mqtt-test` exercises on its own.

use std::path::Path;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
};

use super::MqttConfig;

/// Why a connection or round trip failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("{}: cannot read the MQTT password: {source}", .file.display())]
    PasswordFile {
        file: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the broker at {address} refused the credentials of user '{user}': check mqtt.username and the password in mqtt.password_file"
    )]
    NotAuthorized { address: String, user: String },
    #[error(
        "the broker at {address} requires a user name and password: set mqtt.username and mqtt.password_file"
    )]
    NeedsCredentials { address: String },
    #[error("the broker at {address} refused the connection ({code:?})")]
    Refused {
        address: String,
        code: ConnectReturnCode,
    },
    #[error(
        "nothing accepts connections at {address}: is the broker running? (mqtt.host, mqtt.port)"
    )]
    NoBroker { address: String },
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error(
        "no answer from {address} within {seconds} s (a firewall, or a TLS port spoken to without TLS?)"
    )]
    Timeout { address: String, seconds: u64 },
    #[error(
        "the broker at {address} stopped answering (nothing for {seconds:.1} s, 1.5 × mqtt.keep_alive_s): reconnecting"
    )]
    Silent { address: String, seconds: f64 },
    #[error(
        "the broker at {address} closed the connection right after accepting it, {times} times in a row: is another client connected with the same client id '{client_id}'? (each client needs its own mqtt.client_id)"
    )]
    TakenOver {
        address: String,
        client_id: String,
        times: u32,
    },
    #[error("{}: cannot read: {source}", .file.display())]
    TlsFile {
        file: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the certificate of the broker at {address} is not signed by the CA in {} (mqtt.tls.ca_file): use the CA that issued the broker's certificate", .ca_file.display())]
    TlsUntrusted {
        address: String,
        ca_file: std::path::PathBuf,
    },
    #[error(
        "the certificate of the broker at {address} is not valid for the name '{host}': set mqtt.host to a name (or IP) its certificate lists"
    )]
    TlsWrongName { address: String, host: String },
    #[error("TLS with {address} failed: {reason}")]
    Tls { address: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// The password: the first line of the password file, without its line end.
pub fn read_password(file: &Path) -> Result<String, MqttError> {
    let text = std::fs::read_to_string(file).map_err(|source| MqttError::PasswordFile {
        file: file.to_path_buf(),
        source,
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// The client id: the configured one, else `avscene-<hostname>-<pid>`. The process id
/// keeps two daemons on one host (the demo beside the installed service) from taking
/// each other's connection; sessions are clean, so nothing on the broker needs the id
/// to stay the same across restarts.
pub fn client_id(config: &MqttConfig) -> String {
    if !config.client_id.is_empty() {
        return config.client_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let pid = std::process::id();
    if host.is_empty() {
        format!("avscene-{pid}")
    } else {
        format!("avscene-{host}-{pid}")
    }
}

/// The client and its event loop, every connection attempt bounded by
/// `mqtt.connect_timeout_s`.
pub fn event_loop(options: MqttOptions, config: &MqttConfig) -> (AsyncClient, EventLoop) {
    let (client, mut events) = AsyncClient::new(options, 256);
    let mut network = events.network_options();
    network.set_connection_timeout(config.connect_timeout_s);
    events.set_network_options(network);
    (client, events)
}

/// rumqttc options from the configuration (credentials read from the password file).
pub fn options(config: &MqttConfig, client_id: &str) -> Result<MqttOptions, MqttError> {
    let mut options = MqttOptions::new(client_id, config.host.clone(), config.port);
    options.set_keep_alive(Duration::from_secs(config.keep_alive_s));
    if let Some(user) = &config.username {
        let password = match &config.password_file {
            Some(file) => read_password(file)?,
            None => String::new(),
        };
        options.set_credentials(user.clone(), password);
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        options.set_transport(tls_transport(tls)?);
    }
    Ok(options)
}

/// TLS from the configured CA (and client certificate and key, when given).
#[cfg(feature = "tls")]
fn tls_transport(tls: &super::TlsConfig) -> Result<rumqttc::Transport, MqttError> {
    let read = |file: &Path| {
        std::fs::read(file).map_err(|source| MqttError::TlsFile {
            file: file.to_path_buf(),
            source,
        })
    };
    let ca = read(&tls.ca_file)?;
    crate::support::tls_provider();
    let client_auth = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
        _ => None,
    };
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth,
        },
    ))
}

/// Turn a connection error into the explanation a user needs.
pub fn explain(error: &ConnectionError, config: &MqttConfig) -> MqttError {
    let address = format!("{}:{}", config.host, config.port);
    if let Some(tls) = &config.tls {
        match tls_failure(error) {
            Some(TlsFailure::Untrusted) => {
                return MqttError::TlsUntrusted {
                    address,
                    ca_file: tls.ca_file.clone(),
                };
            }
            Some(TlsFailure::WrongName) => {
                return MqttError::TlsWrongName {
                    address,
                    host: config.host.clone(),
                };
            }
            Some(TlsFailure::Other) => {
                return MqttError::Tls {
                    address,
                    reason: error.to_string(),
                };
            }
            None => {}
        }
    }
    match error {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword,
        ) => match &config.username {
            Some(user) => MqttError::NotAuthorized {
                address,
                user: user.clone(),
            },
            None => MqttError::NeedsCredentials { address },
        },
        ConnectionError::ConnectionRefused(code) => MqttError::Refused {
            address,
            code: *code,
        },
        ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            MqttError::NoBroker { address }
        }
        ConnectionError::Io(e) => MqttError::Unreachable {
            address,
            reason: e.to_string(),
        },
        ConnectionError::NetworkTimeout => MqttError::Timeout {
            address,
            seconds: config.connect_timeout_s,
        },
        other => MqttError::Other(format!("{address}: {other}")),
    }
}

/// How a TLS connection failed, read from the error's type (rustls' certificate error,
/// which the handshake hands on inside an I/O error).
enum TlsFailure {
    /// The broker's certificate is not signed by the configured CA.
    Untrusted,
    /// It is, but for another host name.
    WrongName,
    Other,
}

#[cfg(feature = "tls")]
fn tls_failure(error: &ConnectionError) -> Option<TlsFailure> {
    use rumqttc::TlsError;
    use rumqttc::tokio_rustls::rustls::{CertificateError, Error as Rustls};
    let rustls = |e: &std::io::Error| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Rustls>())
            .cloned()
    };
    let found = match error {
        ConnectionError::Tls(TlsError::TLS(e)) => Some(e.clone()),
        ConnectionError::Tls(TlsError::Io(e)) | ConnectionError::Io(e) => rustls(e),
        ConnectionError::Tls(_) => return Some(TlsFailure::Other),
        _ => None,
    }?;
    Some(match found {
        Rustls::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => TlsFailure::Untrusted,
        Rustls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => TlsFailure::WrongName,
        _ => TlsFailure::Other,
    })
}

#[cfg(not(feature = "tls"))]
fn tls_failure(_: &ConnectionError) -> Option<TlsFailure> {
    None
}

/// What `mqtt-test` found.
#[derive(Debug)]
pub struct RoundTrip {
    pub topic: String,
    pub connect: Duration,
    pub round_trip: Duration,
}

/// Connect, subscribe to a test topic under the prefix, publish to it and wait for the
/// message to come back.
pub async fn round_trip(config: &MqttConfig, timeout: Duration) -> Result<RoundTrip, MqttError> {
    let address = format!("{}:{}", config.host, config.port);
    let id = format!("{}-test", client_id(config));
    let topic = format!("{}/mqtt-test/{id}", config.topic_prefix);
    let (client, mut events) = event_loop(options(config, &id)?, config);
    let started = Instant::now();
    let deadline = started + timeout;
    let mut connected = None;
    let mut sent = None;
    let payload = format!("avscene mqtt-test {}", started.elapsed().as_nanos());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(MqttError::Timeout {
                address,
                seconds: timeout.as_secs(),
            });
        }
        let event = match tokio::time::timeout(left, events.poll()).await {
            Err(_) => {
                return Err(MqttError::Timeout {
                    address,
                    seconds: timeout.as_secs(),
                });
            }
            Ok(Err(e)) => return Err(explain(&e, config)),
            Ok(Ok(event)) => event,
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                connected = Some(started.elapsed());
                client
                    .subscribe(&topic, QoS::AtLeastOnce)
                    .await
                    .map_err(|e| MqttError::Other(e.to_string()))?;
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    return Err(MqttError::Other(format!(
                        "the broker at {address} does not let this user subscribe to {topic} (check its ACL)"
                    )));
                }
                sent = Some(Instant::now());
                client
                    .publish(&topic, QoS::AtLeastOnce, false, payload.clone())
                    .await
                    .map_err(|e| MqttError::Other(e.to_string()))?;
            }
            Event::Incoming(Packet::Publish(p))
                if p.topic == topic && p.payload.as_ref() == payload.as_bytes() =>
            {
                let round_trip = sent.map(|s| s.elapsed()).unwrap_or_default();
                let _ = client.disconnect().await;
                return Ok(RoundTrip {
                    topic,
                    connect: connected.unwrap_or_default(),
                    round_trip,
                });
            }
            _ => {}
        }
    }
}
