//! The network outputs against real peers on the loopback: a Mosquitto broker and its clients,
//! an HTTP client, Prometheus's `promtool`, and headless Chromium (all from Debian's packages,
//! which scripts/setup installs). They run on the host only: under qemu-user they would test
//! the same code more slowly.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "loopback-token-7";

/// Whether to leave the test out, saying why.
fn host_only() -> bool {
    if common::emulated() {
        eprintln!("network tests run on the host only");
        return true;
    }
    false
}

/// A port no one listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    let Some(path) = found else {
        panic!("{name} is not installed: scripts/setup installs it");
    };
    Command::new(path)
}

/// A Mosquitto broker on 127.0.0.1, on a port free when it starts, stopped when dropped.
struct Broker {
    port: u16,
    /// Its config file's folder.
    dir: tempfile::TempDir,
    /// The listener's settings (anonymous clients, or TLS and a password file).
    settings: String,
    child: Option<Child>,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_with(tempfile::tempdir().unwrap(), "allow_anonymous true\n")
    }

    /// A broker whose config file, in `dir`, has `settings` after its listener line.
    fn start_with(dir: tempfile::TempDir, settings: &str) -> Broker {
        let mut broker = Broker {
            port: free_port(),
            dir,
            settings: settings.into(),
            child: None,
        };
        broker.restart();
        broker
    }

    /// Starts the broker (again), on the same port, and waits until it accepts connections.
    fn restart(&mut self) {
        let config = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "listener {} 127.0.0.1\npersistence false\n{}",
                self.port, self.settings
            ),
        )
        .unwrap();
        let child = tool("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `mosquitto_sub -v` on `topic`: every message as (topic, payload), until dropped or `count`.
struct Subscriber {
    child: Child,
    messages: Arc<Mutex<Vec<(String, String)>>>,
    reader: Option<JoinHandle<()>>,
}

impl Subscriber {
    fn start(port: u16, topic: &str, count: Option<usize>) -> Subscriber {
        Subscriber::start_with(port, topic, count, &[])
    }

    /// A subscriber with `options` too (TLS, a user name).
    fn start_with(port: u16, topic: &str, count: Option<usize>, options: &[&str]) -> Subscriber {
        let mut command = tool("mosquitto_sub");
        command.args(options);
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                topic,
                "-v",
            ])
            .args(["-W", "60"]);
        if let Some(count) = count {
            command.args(["-C", &count.to_string()]);
        }
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let messages = messages.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let line = line.unwrap();
                    let (topic, payload) = line.split_once(' ').unwrap_or((&line, ""));
                    messages
                        .lock()
                        .unwrap()
                        .push((topic.to_owned(), payload.to_owned()));
                }
            })
        };
        // mosquitto_sub has subscribed once the broker has answered; give it that moment.
        std::thread::sleep(Duration::from_millis(300));
        Subscriber {
            child,
            messages,
            reader: Some(reader),
        }
    }

    fn messages(&self) -> Vec<(String, String)> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until a message on `topic` has `payload` (any payload when None).
    fn wait_for(&self, topic: &str, payload: Option<&str>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .messages()
                .iter()
                .any(|(t, p)| t == topic && payload.is_none_or(|want| p == want))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Every message, once `mosquitto_sub` has taken its count or been stopped.
    fn finish(mut self) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.messages()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pinsight run` in the background, its stdout lines and stderr kept.
struct Run {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Run {
    fn start(config: &Path) -> Run {
        let mut child = common::pinsight()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let readers = vec![
            {
                let stdout = stdout.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(out).lines() {
                        stdout.lock().unwrap().push(line.unwrap());
                    }
                })
            },
            {
                let stderr = stderr.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(err).lines() {
                        let mut stderr = stderr.lock().unwrap();
                        stderr.push_str(&line.unwrap());
                        stderr.push('\n');
                    }
                })
            },
        ];
        Run {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn results(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    /// Waits for a log line containing `needle`, and returns it.
    fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .find(|line| line.contains(needle))
            {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline && self.child.try_wait().unwrap().is_none(),
                "no {needle:?} in the log:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `n` results are out.
    fn wait_for_results(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.results() < n {
            assert!(
                Instant::now() < deadline && self.child.try_wait().unwrap().is_none(),
                "fewer than {n} results:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address `[http]` serves on, from the log.
    fn http_address(&mut self) -> SocketAddr {
        let line = self.wait_for_log("http: serving on http://");
        let address = line.rsplit("http://").next().unwrap().trim_end_matches('/');
        address.parse().unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the end: the status, the result lines, the log.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stdout, stderr)
    }
}

/// A folder of `n` photos and a config file reading them at `fps`, with `sections` added.
fn deployment(n: usize, fps: f64, sections: &str) -> (tempfile::TempDir, PathBuf) {
    let photos = common::photo_folder(&[("photos", n)]);
    let config = photos.path().join("pinsight.toml");
    std::fs::write(
        &config,
        format!("[run]\nsource = \"photos\"\nfps = {fps}\ntop = 2\n{sections}"),
    )
    .unwrap();
    (photos, config)
}

fn mqtt_section(port: u16, extra: &str) -> String {
    format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ndevice = \"bench\"\n\
         classes = [\"sandal\", \"cowboy hat, ten-gallon hat\"]\n{extra}"
    )
}

#[test]
fn mqtt_carries_results_states_discovery_and_availability() {
    if host_only() {
        return;
    }
    let broker = Broker::start();
    let everything = Subscriber::start(broker.port, "#", None);
    let (_photos, config) = deployment(9, 50.0, &mqtt_section(broker.port, ""));
    let (status, lines, log) = Run::start(&config).finish();
    assert!(status.success(), "{log}");
    assert_eq!(lines.len(), 9, "{log}");
    assert!(
        everything.wait_for(
            "pinsight/bench/availability",
            Some("offline"),
            Duration::from_secs(10)
        ),
        "{:?}",
        everything.messages()
    );
    let messages = everything.finish();

    // Each result is the stdout line, in order.
    let results: Vec<&String> = messages
        .iter()
        .filter(|(topic, _)| topic == "pinsight/bench/result")
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(results, lines.iter().collect::<Vec<_>>());

    // Discovery: a sensor for the label, a binary sensor per configured class and one for
    // "unknown".
    let config_of = |topic: &str| -> Value {
        let (_, payload) = messages
            .iter()
            .find(|(t, _)| t == topic)
            .unwrap_or_else(|| panic!("no {topic}"));
        serde_json::from_str(payload).unwrap()
    };
    let label = config_of("homeassistant/sensor/pinsight_bench/label/config");
    assert_eq!(label["state_topic"], "pinsight/bench/result");
    assert_eq!(label["availability_topic"], "pinsight/bench/availability");
    assert_eq!(label["unique_id"], "pinsight_bench_label");
    assert!(
        label["value_template"]
            .as_str()
            .unwrap()
            .contains("value_json.label")
    );
    assert_eq!(label["device"]["identifiers"][0], "pinsight_bench");
    for (class, level) in [
        ("sandal", "sandal"),
        ("cowboy hat, ten-gallon hat", "cowboy_hat__ten-gallon_hat"),
    ] {
        let sensor = config_of(&format!(
            "homeassistant/binary_sensor/pinsight_bench/{level}/config"
        ));
        assert_eq!(sensor["name"], class);
        assert_eq!(
            sensor["state_topic"],
            format!("pinsight/bench/class/{level}")
        );
        assert_eq!(
            (&sensor["payload_on"], &sensor["payload_off"]),
            (&"ON".into(), &"OFF".into())
        );
        assert_eq!(sensor["unique_id"], format!("pinsight_bench_{level}"));
    }
    assert_eq!(
        messages
            .iter()
            .filter(|(t, _)| t.ends_with("/config"))
            .count(),
        4
    );
    // And a binary sensor that is on while results are unknown, read from the result itself.
    let unknown = config_of("homeassistant/binary_sensor/pinsight_bench/unknown/config");
    assert_eq!(unknown["state_topic"], "pinsight/bench/result");
    assert_eq!(unknown["unique_id"], "pinsight_bench_unknown");
    assert!(
        unknown["value_template"]
            .as_str()
            .unwrap()
            .contains("value_json.unknown")
    );

    // The states follow the labels: the last state of each class says whether the last
    // result's label is that class.
    let last_label: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    for (class, level) in [
        ("sandal", "sandal"),
        ("cowboy hat, ten-gallon hat", "cowboy_hat__ten-gallon_hat"),
    ] {
        let topic = format!("pinsight/bench/class/{level}");
        let last = messages.iter().rev().find(|(t, _)| *t == topic).unwrap();
        let on = last_label["label"] == class;
        assert_eq!(last.1, if on { "ON" } else { "OFF" }, "{class}");
    }

    // States and availability are retained: a client that comes later gets them.
    let later = Subscriber::start(broker.port, "pinsight/bench/+", Some(1));
    let later = later.finish();
    assert_eq!(
        later,
        vec![(
            "pinsight/bench/availability".to_owned(),
            "offline".to_owned()
        )]
    );
    let states = Subscriber::start(broker.port, "pinsight/bench/class/#", Some(2)).finish();
    assert_eq!(states.len(), 2, "{states:?}");
}

/// Runs `openssl` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let output = tool("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// In `dir`: an authority (`ca.pem`) and a certificate for 127.0.0.1 it signed (`server.pem`,
/// `server.key`); another authority that signed nothing (`other-ca.pem`).
fn certificates(dir: &Path) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let (key_file, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let subject = format!("/CN=pinsight test {ca}");
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
        args.extend(key);
        args.extend(["-keyout", &key_file, "-out", &pem]);
        openssl(dir, &args);
    }
    let mut args = vec!["req", "-subj", "/CN=127.0.0.1", "-keyout", "server.key"];
    args.extend(key);
    args.extend(["-out", "server.csr"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         extendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

#[test]
fn mqtt_over_tls_with_a_password_and_refused_without_the_right_authority_or_password() {
    if host_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let status = tool("mosquitto_passwd")
        .args(["-b", "-c", "passwd", "pinsight", "s3cret"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    // Mosquitto started by root drops to its own user, which must read them.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let settings = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n",
        path("ca.pem"),
        path("server.pem"),
        path("server.key"),
        path("passwd")
    );
    let broker = Broker::start_with(dir, &settings);
    let ca = broker.dir.path().join("ca.pem");
    let results = Subscriber::start_with(
        broker.port,
        "pinsight/vault/result",
        None,
        &[
            "--cafile",
            &ca.display().to_string(),
            "-u",
            "pinsight",
            "-P",
            "s3cret",
        ],
    );
    let section = |ca: &str, password: &str| {
        format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\ndevice = \"vault\"\ntls = true\n\
             ca_file = {:?}\nusername = \"pinsight\"\npassword = \"{password}\"\n",
            broker.port,
            broker.dir.path().join(ca)
        )
    };

    let (_photos, config) = deployment(4, 50.0, &section("ca.pem", "s3cret"));
    let (status, lines, log) = Run::start(&config).finish();
    assert!(status.success(), "{log}");
    assert_eq!(lines.len(), 4, "{log}");
    assert!(log.contains("mqtt: connected to"), "{log}");
    let finished = Instant::now() + Duration::from_secs(10);
    while results.messages().len() < 4 && Instant::now() < finished {
        std::thread::sleep(Duration::from_millis(50));
    }
    let payloads: Vec<String> = results.messages().into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, lines, "every result, over TLS");

    // An authority that did not sign the broker's certificate, or a wrong password: no
    // connection, said in the log, and every result still on stdout.
    for (ca, password, reason) in [
        ("other-ca.pem", "s3cret", "certificate"),
        ("ca.pem", "wrong", "NotAuthorized"),
    ] {
        let (_photos, config) = deployment(4, 50.0, &section(ca, password));
        let (status, lines, log) = Run::start(&config).finish();
        assert!(status.success(), "{log}");
        assert_eq!(lines.len(), 4, "{log}");
        assert!(!log.contains("mqtt: connected to"), "{log}");
        let warning = log.lines().find(|l| l.contains("mqtt: 127.0.0.1:"));
        assert!(
            warning.is_some_and(|w| w.contains(reason)),
            "{ca}, {password}: no {reason:?} in\n{log}"
        );
    }
    assert_eq!(
        results.messages().len(),
        4,
        "nothing more reached the broker"
    );
}

#[test]
fn the_last_will_says_offline_when_pinsight_is_killed() {
    if host_only() {
        return;
    }
    let broker = Broker::start();
    let availability = Subscriber::start(broker.port, "pinsight/bench/availability", None);
    let (_photos, config) = deployment(200, 2.0, &mqtt_section(broker.port, ""));
    let mut run = Run::start(&config);
    assert!(availability.wait_for(
        "pinsight/bench/availability",
        Some("online"),
        Duration::from_secs(60)
    ));
    run.wait_for_results(1);
    run.kill();
    run.finish();
    assert!(
        availability.wait_for(
            "pinsight/bench/availability",
            Some("offline"),
            Duration::from_secs(10)
        ),
        "{:?}",
        availability.messages()
    );
}

#[test]
fn a_broker_that_goes_away_costs_no_result_and_what_it_misses_is_counted() {
    if host_only() {
        return;
    }
    let mut broker = Broker::start();
    let photos = 60;
    // A queue of 5 results: the broker's absence overflows it.
    let (_photos, config) = deployment(photos, 20.0, &mqtt_section(broker.port, "queue = 5\n"));
    let mut run = Run::start(&config);
    run.wait_for_log("mqtt: connected");
    run.wait_for_results(5);
    broker.stop();
    run.wait_for_log("connecting again");
    std::thread::sleep(Duration::from_millis(1000));
    let during = run.results();
    broker.restart();
    let after = Subscriber::start(broker.port, "pinsight/bench/result", None);
    let (status, lines, log) = run.finish();
    assert!(status.success(), "{log}");
    // Every photo gave its result, broker or not.
    assert_eq!(lines.len(), photos, "{log}");
    assert!(during < photos, "the run ended before the broker came back");
    assert_eq!(log.matches("mqtt: connected").count(), 2, "{log}");
    let summary = log
        .lines()
        .find(|line| line.contains("results queued"))
        .unwrap_or_else(|| panic!("no MQTT summary in\n{log}"));
    let figures: Vec<u64> = summary
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    let (queued, dropped) = (figures[0], figures[1]);
    assert_eq!(queued + dropped, photos as u64, "{summary}");
    assert!(dropped > 0, "{summary}");
    // Results after the broker came back reached it.
    let received = after.finish();
    assert!(!received.is_empty(), "{log}");
    eprintln!(
        "broker away: {summary}; {} results received after it came back",
        received.len()
    );
}

/// A GET on the loopback: the status, the headers, the body (read for at most `read_for`).
fn get(
    address: SocketAddr,
    path: &str,
    token: Option<&str>,
    read_for: Duration,
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + read_for;
    let mut response = Vec::new();
    let mut buffer = [0u8; 65536];
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{path}: {e}"),
        }
    }
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{path}: no response"));
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = response[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

/// A chunked body's data (what arrived of it).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16)
            .unwrap();
        let start = line_end + 2;
        if size == 0 || raw.len() < start + size {
            out.extend_from_slice(&raw[start.min(raw.len())..(start + size).min(raw.len())]);
            break;
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}

fn http_section() -> String {
    format!("[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nstream_fps = 10\n")
}

#[test]
fn http_serves_health_metrics_a_snapshot_and_a_stream_to_those_with_the_token() {
    if host_only() {
        return;
    }
    // With [keep] too, for its metrics.
    let sections = format!("{}[keep]\nfolder = \"unsure\"\n", http_section());
    let (_photos, config) = deployment(100, 10.0, &sections);
    let mut run = Run::start(&config);
    let address = run.http_address();
    run.wait_for_results(2);
    let second = Duration::from_secs(5);

    for path in [
        "/healthz",
        "/metrics",
        "/snapshot.jpg",
        "/stream.mjpeg",
        "/",
        "/result.json",
    ] {
        let (status, _, _) = get(address, path, None, second);
        assert_eq!(status, 401, "{path} without the token");
        let (status, _, _) = get(address, path, Some("not-the-token"), second);
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let (status, _, body) = get(address, "/healthz?token=loopback-token-7", None, second);
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["healthy"], true, "{health}");
    assert_eq!(health["model_loaded"], true);
    assert_eq!(health["camera_streaming"], true);
    assert!(health["last_result_age_seconds"].as_f64().unwrap() < 5.0);

    // /metrics is Prometheus text, as promtool reads and lints it.
    let (status, head, body) = get(address, "/metrics", Some(TOKEN), second);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let text = String::from_utf8(body).unwrap();
    let mut promtool = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    for name in [
        "pinsight_frames_total",
        "pinsight_results_total",
        // The ImageNet head has no unknown threshold.
        "pinsight_results_unknown_total 0",
        "pinsight_frames_skipped_total 0",
        "pinsight_frames_dropped_total 0",
        "pinsight_stage_duration_seconds_bucket{stage=\"inference\",le=\"+Inf\"}",
        "pinsight_inference_duration_seconds{quantile=\"0.5\"}",
        "pinsight_inference_duration_seconds{quantile=\"0.99\"}",
        "pinsight_resident_memory_bytes",
        "pinsight_model_loaded 1",
        "pinsight_camera_streaming 1",
        "pinsight_kept_total",
        "pinsight_kept_dropped_total",
        "pinsight_kept_files",
    ] {
        assert!(text.contains(name), "no {name} in\n{text}");
    }

    // The snapshot is a JPEG of the photo's size.
    let (status, head, body) = get(address, "/snapshot.jpg", Some(TOKEN), second);
    assert_eq!(status, 200);
    assert!(head.contains("image/jpeg"), "{head}");
    let snapshot = image::load_from_memory(&body).unwrap();
    assert!(snapshot.width() > 0 && snapshot.height() > 0);

    // The stream yields several JPEG frames in two seconds.
    let (status, head, body) = get(
        address,
        "/stream.mjpeg",
        Some(TOKEN),
        Duration::from_secs(2),
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("multipart/x-mixed-replace; boundary=pinsight-frame"),
        "{head}"
    );
    let frames = jpegs_in(&body);
    assert!(frames.len() >= 3, "{} frames", frames.len());
    for frame in &frames {
        image::load_from_memory(frame).unwrap();
    }

    let (status, _, body) = get(address, "/result.json", Some(TOKEN), second);
    assert_eq!(status, 200);
    let result: Value = serde_json::from_slice(&body).unwrap();
    assert!(result["top"].as_array().is_some_and(|top| top.len() == 2));
    let (status, _, _) = get(address, "/nothing", Some(TOKEN), second);
    assert_eq!(status, 404);
    run.kill();
    run.finish();
}

/// The parts of an MJPEG stream, each checked to be announced with its length.
fn jpegs_in(body: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, b"Content-Length: ") {
        let after = &rest[at + 16..];
        let line_end = find(after, b"\r\n").unwrap();
        let length: usize = std::str::from_utf8(&after[..line_end])
            .unwrap()
            .parse()
            .unwrap();
        let start = line_end + 4;
        if after.len() < start + length {
            break;
        }
        frames.push(&after[start..start + length]);
        rest = &after[start + length..];
    }
    frames
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn the_page_shows_the_stream_and_the_newest_label_in_chromium() {
    if host_only() {
        return;
    }
    let (photos, config) = deployment(100, 10.0, &http_section());
    let mut run = Run::start(&config);
    let address = run.http_address();
    run.wait_for_results(3);
    let profile = photos.path().join("chromium-profile");
    let screenshot = photos.path().join("page.png");
    let url = format!("http://{address}/?token={TOKEN}");
    let chromium = |extra: &[&str]| {
        tool("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=3000",
                "--window-size=1100,700",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .stderr(Stdio::null())
            .output()
            .unwrap()
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(dom.status.success());
    let dom = String::from_utf8(dom.stdout).unwrap();
    let shot = chromium(&[&format!("--screenshot={}", screenshot.display())]);
    assert!(shot.status.success());
    run.kill();
    let (_, lines, _) = run.finish();

    // The label shown is one of the run's results' (or their best guess when below the
    // threshold), and the table lists a result's top labels.
    let shown = dom
        .split("<p id=\"label\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no label in\n{dom}"));
    let expected: Vec<String> = lines
        .iter()
        .map(|line| {
            let result: Value = serde_json::from_str(line).unwrap();
            match result["label"].as_str() {
                Some(label) => label.to_owned(),
                None => format!(
                    "below the threshold ({}?)",
                    result["top"][0]["label"].as_str().unwrap()
                ),
            }
        })
        .collect();
    assert!(
        expected.iter().any(|label| html_text(label) == shown),
        "{shown:?} is not among {expected:?}"
    );
    assert!(dom.contains("<td class=\"score\">"), "{dom}");

    // The screenshot shows the stream: a photo has many more colours than the page alone.
    let picture = image::open(&screenshot).unwrap().to_rgb8();
    let colours: std::collections::HashSet<[u8; 3]> = picture.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 2000, "{} colours", colours.len());
}

/// `text` as the DOM serialises it between tags.
fn html_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The internet sockets (TCP or UDP, IPv4 or IPv6) a process holds: its open files that are
/// sockets whose inodes its network namespace lists in `/proc/<pid>/net/{tcp,udp}{,6}`. (Unix
/// sockets, such as the signal handler's, are not counted.)
fn internet_sockets_of(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let target = target.to_string_lossy();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut listed = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        listed.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().nth(9).map(str::to_owned)),
        );
    }
    inodes.iter().filter(|inode| listed.contains(inode)).count()
}

#[test]
fn without_mqtt_or_http_no_socket_is_opened() {
    if host_only() {
        return;
    }
    for (sections, expect_sockets) in [("", false), (&*http_section(), true)] {
        let (_photos, config) = deployment(100, 10.0, sections);
        let mut run = Run::start(&config);
        run.wait_for_results(3);
        let sockets = internet_sockets_of(run.pid());
        run.kill();
        run.finish();
        assert_eq!(
            sockets > 0,
            expect_sockets,
            "{sections:?}: {sockets} sockets"
        );
    }
}
