//! Results to an MQTT broker (`[mqtt]` in the config file), for Home Assistant, Node-RED and the
//! like. With `prefix` "pinsight" and `device` "door":
//!
//! - `pinsight/door/result`: each result, the JSON line `pinsight run` prints (QoS 1);
//! - `pinsight/door/class/<class>`: `ON` while the class is the label, else `OFF` (retained,
//!   QoS 1, sent when it changes), for each class of [`MqttSettings::classes`];
//! - `pinsight/door/availability`: `online` once connected, `offline` when the run ends, and the
//!   broker's last will `offline` when the process dies (retained);
//! - Home Assistant discovery (retained, on each connection): a sensor for the label and a binary
//!   sensor per class, under `<discovery_prefix>/sensor/pinsight_door/…` and
//!   `<discovery_prefix>/binary_sensor/pinsight_door/…`.
//!
//! A class's topic level is its name with every character other than ASCII letters, digits, `-`
//! and `_` replaced by `_` ([`topic_level`]).
//!
//! The broker going away never holds the loop up: results wait in the client's bounded queue
//! (`queue` results) while it reconnects, with a backoff from half a second to 30 seconds; a
//! result that finds the queue full is dropped and counted (`/metrics`, and the run's last log
//! line).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{oneshot, watch};

use super::Hub;
use crate::{Error, Result};

/// How long the end of a run waits for the broker to take the queued results.
pub const FLUSH: Duration = Duration::from_secs(5);
/// Results queued while the broker is away, when the config file does not say.
pub const DEFAULT_QUEUE: u32 = 1000;
/// `queue`: 1 to 100000 results.
pub const QUEUE: (u32, u32) = (1, 100_000);
/// The topic prefix when the config file does not say.
pub const DEFAULT_PREFIX: &str = "pinsight";
/// Home Assistant's discovery prefix, its default.
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";
/// Without `classes`, a head with at most this many classes gets a state topic for each.
pub const MAX_DEFAULT_CLASSES: usize = 20;
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The largest message either way: a result with every class of a 1000-class head fits.
const MAX_PACKET: usize = 1 << 20;

/// What `[mqtt]` says.
#[derive(Debug, Clone, Serialize)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    /// This device's topic level: the host name unless the config file says.
    pub device: String,
    pub prefix: String,
    pub username: Option<String>,
    /// Shown as `"(set)"` by `pinsight config`.
    #[serde(serialize_with = "super::secret")]
    pub password: Option<String>,
    pub tls: bool,
    /// The certificate authorities (PEM) a TLS broker's certificate is checked against; the
    /// system's (`/etc/ssl/certs`) when unset.
    pub ca_file: Option<PathBuf>,
    pub discovery: bool,
    pub discovery_prefix: String,
    /// The classes with a state topic and a binary sensor; unset: every class of a head with at
    /// most [`MAX_DEFAULT_CLASSES`], else the config's output classes.
    pub classes: Option<Vec<String>>,
    pub queue: u32,
}

/// `[mqtt]` as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    host: String,
    port: Option<i64>,
    device: Option<String>,
    prefix: Option<String>,
    username: Option<String>,
    password: Option<String>,
    tls: Option<bool>,
    ca_file: Option<PathBuf>,
    discovery: Option<bool>,
    discovery_prefix: Option<String>,
    classes: Option<Vec<String>>,
    queue: Option<i64>,
}

impl MqttSettings {
    /// `[mqtt]` of a config file in `folder` (which `ca_file` is relative to), checked; an
    /// error names the key.
    pub fn from_toml(value: toml::Value, folder: &Path) -> std::result::Result<Self, String> {
        let raw: RawMqtt = value
            .try_into()
            .map_err(|e: toml::de::Error| format!("[mqtt]: {}", e.message()))?;
        let key = |key: &str, reason: String| format!("[mqtt] {key}: {reason}");
        if raw.host.trim().is_empty() || raw.host.contains(char::is_whitespace) {
            return Err(key(
                "host",
                format!("{:?} is not a host name or address", raw.host),
            ));
        }
        let tls = raw.tls.unwrap_or(false);
        let port = match raw.port {
            None => {
                if tls {
                    8883
                } else {
                    1883
                }
            }
            Some(port) => u16::try_from(port).ok().filter(|&p| p > 0).ok_or_else(|| {
                key(
                    "port",
                    format!("{port} is out of range: it must be 1 to 65535"),
                )
            })?,
        };
        let device = match raw.device {
            Some(device) => {
                if device.is_empty() || topic_level(&device) != device {
                    return Err(key(
                        "device",
                        format!(
                            "{device:?} must be ASCII letters, digits, - and _ (one topic level)"
                        ),
                    ));
                }
                device
            }
            None => topic_level(&host_name()),
        };
        let prefix = |name: &str, value: Option<String>, default: &str| {
            let value = value.unwrap_or_else(|| default.into());
            if value.is_empty()
                || value.starts_with('/')
                || value.ends_with('/')
                || value.contains(['+', '#', '\0'])
            {
                return Err(key(
                    name,
                    format!("{value:?} is not a topic prefix (no +, #, or / at either end)"),
                ));
            }
            Ok(value)
        };
        if raw.password.is_some() && raw.username.is_none() {
            return Err(key("password", "needs a username".into()));
        }
        if raw.ca_file.is_some() && !tls {
            return Err(key("ca_file", "needs tls = true".into()));
        }
        if let Some(classes) = &raw.classes
            && classes.iter().any(String::is_empty)
        {
            return Err(key("classes", "a class name is empty".into()));
        }
        let queue = match raw.queue {
            None => DEFAULT_QUEUE,
            Some(queue) => u32::try_from(queue)
                .ok()
                .filter(|q| (QUEUE.0..=QUEUE.1).contains(q))
                .ok_or_else(|| {
                    key(
                        "queue",
                        format!(
                            "{queue} is out of range: it must be {} to {}",
                            QUEUE.0, QUEUE.1
                        ),
                    )
                })?,
        };
        Ok(MqttSettings {
            host: raw.host,
            port,
            device,
            prefix: prefix("prefix", raw.prefix, DEFAULT_PREFIX)?,
            username: raw.username,
            password: raw.password,
            tls,
            ca_file: raw.ca_file.map(|path| folder.join(path)),
            discovery: raw.discovery.unwrap_or(true),
            discovery_prefix: prefix(
                "discovery_prefix",
                raw.discovery_prefix,
                DEFAULT_DISCOVERY_PREFIX,
            )?,
            classes: raw.classes,
            queue,
        })
    }

    /// The classes given state topics, for a head with `labels` and outputs for
    /// `output_classes`; an error names a configured class the head does not have.
    pub fn classes_for(
        &self,
        labels: &[String],
        output_classes: &[String],
    ) -> std::result::Result<Vec<String>, String> {
        match &self.classes {
            Some(classes) => {
                if let Some(missing) = classes.iter().find(|c| !labels.contains(c)) {
                    return Err(format!("[mqtt] classes: the head has no class {missing:?}"));
                }
                Ok(classes.clone())
            }
            None if labels.len() <= MAX_DEFAULT_CLASSES => Ok(labels.to_vec()),
            None => Ok(output_classes.to_vec()),
        }
    }

    fn topic(&self, suffix: &str) -> String {
        format!("{}/{}/{suffix}", self.prefix, self.device)
    }
}

/// This machine's host name (`pinsight` when it has none).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "pinsight".into())
}

/// `name` as one topic level and discovery id: ASCII letters, digits, `-` and `_` kept, every
/// other character `_`.
pub fn topic_level(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The loop's side of the client: puts results on the queue, never waiting.
pub struct Publisher {
    client: AsyncClient,
    result_topic: String,
    availability: String,
    /// Each class with its state topic.
    classes: Vec<(String, String)>,
    /// Results the queue holds.
    capacity: u32,
    /// The label whose states the broker has, when it has them all.
    states: Arc<Mutex<Option<Option<String>>>>,
}

impl Publisher {
    /// Queues `json` (a result with `label`) and any state topic it changes.
    pub fn result(&self, json: &str, label: Option<&str>, metrics: &super::Metrics) {
        let counts = metrics.mqtt();
        match self
            .client
            .try_publish(&self.result_topic, QoS::AtLeastOnce, false, json.as_bytes())
        {
            Ok(()) => counts.queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => counts.dropped.fetch_add(1, Ordering::Relaxed),
        };
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let label = label.map(str::to_owned);
        if states.as_ref() == Some(&label) {
            return;
        }
        let before = states.take();
        let mut sent_all = true;
        for (class, topic) in &self.classes {
            let on = label.as_ref() == Some(class);
            let was = before.as_ref().map(|b| b.as_ref() == Some(class));
            if was == Some(on) {
                continue;
            }
            sent_all &= self
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, state_payload(on))
                .is_ok();
        }
        // A state that did not fit in the queue is sent with the next change.
        *states = sent_all.then_some(label);
    }

    /// Says the device is going offline and disconnects, after what is queued.
    fn finish(&self) {
        let _ = self
            .client
            .try_publish(&self.availability, QoS::AtLeastOnce, true, "offline");
        let _ = self.client.try_disconnect();
    }
}

/// Sets the client up and starts it on `runtime`: it connects in the background and keeps
/// connecting. Returns the loop's side and what says the client has ended.
pub fn start(
    settings: &MqttSettings,
    classes: &[String],
    runtime: &tokio::runtime::Runtime,
    stopped: watch::Receiver<bool>,
    hub: Arc<Hub>,
) -> Result<(Arc<Publisher>, oneshot::Receiver<()>)> {
    let availability = settings.topic("availability");
    let mut options = MqttOptions::new(
        format!("pinsight-{}", settings.device),
        &settings.host,
        settings.port,
    );
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            &availability,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(username) = &settings.username {
        options.set_credentials(username, settings.password.clone().unwrap_or_default());
    }
    if settings.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls_config(settings)?),
        )));
    }
    let (client, eventloop) = AsyncClient::new(options, settings.queue as usize);
    let publisher = Arc::new(Publisher {
        client: client.clone(),
        result_topic: settings.topic("result"),
        availability,
        classes: classes
            .iter()
            .map(|class| {
                let topic = settings.topic(&format!("class/{}", topic_level(class)));
                (class.clone(), topic)
            })
            .collect(),
        capacity: settings.queue,
        states: Arc::default(),
    });
    let (done, ended) = oneshot::channel();
    let connection = Connection {
        eventloop,
        publisher: publisher.clone(),
        announcements: announcements(settings, &publisher),
        address: format!("{}:{}", settings.host, settings.port),
        hub,
        stopped,
    };
    runtime.spawn(async move {
        connection.run().await;
        let _ = done.send(());
    });
    Ok((publisher, ended))
}

/// The client's connection, driven on the network thread.
struct Connection {
    eventloop: EventLoop,
    publisher: Arc<Publisher>,
    /// What each new connection sends first: discovery and `online` (topic, payload).
    announcements: Vec<(String, String)>,
    address: String,
    hub: Arc<Hub>,
    stopped: watch::Receiver<bool>,
}

impl Connection {
    async fn run(mut self) {
        let counts = self.hub.metrics.mqtt();
        let mut backoff = MAX_BACKOFF / 60;
        let mut away = false;
        let mut finishing = false;
        loop {
            if *self.stopped.borrow() && !finishing {
                finishing = true;
                if !counts.connected.load(Ordering::Relaxed) {
                    break;
                }
                self.publisher.finish();
            }
            let event = tokio::select! {
                event = self.eventloop.poll() => event,
                // Polling again after the stop sends what is queued, then the disconnect.
                _ = self.stopped.wait_for(|stop| *stop), if !finishing => continue,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    counts.connected.store(true, Ordering::Relaxed);
                    counts.connections.fetch_add(1, Ordering::Relaxed);
                    log::info!("mqtt: connected to {}", self.address);
                    away = false;
                    backoff = MAX_BACKOFF / 60;
                    tokio::spawn(announce(self.publisher.clone(), self.announcements.clone()));
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counts.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    counts.connected.store(false, Ordering::Relaxed);
                    if finishing {
                        break;
                    }
                    if !away {
                        log::warn!(
                            "mqtt: {}: {e}; connecting again (up to {} results wait meanwhile)",
                            self.address,
                            self.publisher.capacity
                        );
                        away = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = self.stopped.wait_for(|stop| *stop) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        counts.connected.store(false, Ordering::Relaxed);
    }
}

/// Sends a new connection's announcements, then every class state (the broker may have
/// restarted without them), waiting for room in the queue.
async fn announce(publisher: Arc<Publisher>, announcements: Vec<(String, String)>) {
    let label = {
        let mut states = publisher.states.lock().unwrap_or_else(|e| e.into_inner());
        // Until all are sent again, the next result sends every state.
        states.take().flatten()
    };
    let states = publisher.classes.iter().map(|(class, topic)| {
        let on = label.as_ref() == Some(class);
        (topic.clone(), state_payload(on).to_owned())
    });
    for (topic, payload) in announcements.into_iter().chain(states) {
        if publisher
            .client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .is_err()
        {
            return;
        }
    }
    // Unless a result has sent states meanwhile, the broker has them all for `label`.
    let mut states = publisher.states.lock().unwrap_or_else(|e| e.into_inner());
    if states.is_none() {
        *states = Some(label);
    }
}

/// A class state topic's payload.
fn state_payload(on: bool) -> &'static str {
    if on { "ON" } else { "OFF" }
}

/// The discovery object id of the binary sensor that is on while results are unknown.
const UNKNOWN_LEVEL: &str = "unknown";

/// Home Assistant's discovery messages and `online`, as each connection sends them.
fn announcements(settings: &MqttSettings, publisher: &Publisher) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if settings.discovery {
        let node = format!("pinsight_{}", topic_level(&settings.device));
        let device = json!({
            "identifiers": [node],
            "name": format!("pinsight {}", settings.device),
            "manufacturer": "pinsight",
            "model": "pinsight",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        let available = json!({
            "availability_topic": publisher.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
        });
        let mut label = json!({
            "name": "Label",
            "unique_id": format!("{node}_label"),
            "state_topic": publisher.result_topic,
            "value_template": "{{ value_json.label if value_json.label is not none else 'none' }}",
            "json_attributes_topic": publisher.result_topic,
            "json_attributes_template": "{{ {'top': value_json.top, 'frame': value_json.frame} | tojson }}",
            "device": device,
        });
        merge(&mut label, &available);
        out.push((
            format!("{}/sensor/{node}/label/config", settings.discovery_prefix),
            label.to_string(),
        ));
        // A class of that name has the `unknown` binary sensor already: the user chose it.
        if publisher
            .classes
            .iter()
            .all(|(class, _)| topic_level(class) != UNKNOWN_LEVEL)
        {
            let mut unknown = json!({
                "name": "Unknown",
                "unique_id": format!("{node}_{UNKNOWN_LEVEL}"),
                "state_topic": publisher.result_topic,
                "value_template": "{{ 'ON' if value_json.unknown else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "device": {"identifiers": [node]},
            });
            merge(&mut unknown, &available);
            out.push((
                format!(
                    "{}/binary_sensor/{node}/{UNKNOWN_LEVEL}/config",
                    settings.discovery_prefix
                ),
                unknown.to_string(),
            ));
        } else {
            log::warn!(
                "[mqtt] discovery: a class is named \"{UNKNOWN_LEVEL}\", so the result's own \
                 unknown sensor is not announced (the class's is)"
            );
        }
        for (class, topic) in &publisher.classes {
            let level = topic_level(class);
            let mut sensor = json!({
                "name": class,
                "unique_id": format!("{node}_{level}"),
                "state_topic": topic,
                "payload_on": "ON",
                "payload_off": "OFF",
                "device": {"identifiers": [node]},
            });
            merge(&mut sensor, &available);
            out.push((
                format!(
                    "{}/binary_sensor/{node}/{level}/config",
                    settings.discovery_prefix
                ),
                sensor.to_string(),
            ));
        }
    }
    out.push((publisher.availability.clone(), "online".into()));
    out
}

fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        into.extend(from.clone());
    }
}

/// TLS with `ca_file`'s authorities, or the system's.
fn tls_config(settings: &MqttSettings) -> Result<rustls::ClientConfig> {
    let bad = |reason: String| Error::Network {
        what: "[mqtt] tls".into(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let pem = crate::decode::read_regular_file(path, 1 << 20, "a CA file")?;
            let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad(format!("{}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(bad(format!(
                    "{} has no PEM certificate pinsight can use",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(bad(
                    "the system has no certificate authorities (install ca-certificates, or \
                     set ca_file)"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_become_one_topic_level() {
        assert_eq!(topic_level("cup"), "cup");
        assert_eq!(topic_level("Granny Smith"), "Granny_Smith");
        assert_eq!(topic_level("a/b+#c"), "a_b__c");
        assert_eq!(topic_level("café"), "caf_");
    }
}
