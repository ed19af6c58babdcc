//! The network outputs of `pinsight run`, off unless the config file has `[mqtt]` or `[http]`:
//! results to an MQTT broker ([`mqtt`]) and an HTTP endpoint with health, metrics, a snapshot
//! and a live preview ([`http`]).
//!
//! The run loop feeds one [`Hub`]: each result with the frame it came from, and the times the
//! source showed it was alive. Feeding it never waits on the network: the hub keeps the newest
//! result and frame under a lock held for a copy, counts into [`Metrics`], and hands the result
//! to the MQTT client's bounded queue (dropping it, counted, when the queue is full). Everything
//! that talks to the network runs on one thread of its own ([`Network`]) with an async runtime;
//! JPEG encoding for the preview runs on that runtime's blocking pool, once per new frame,
//! whatever the number of viewers.

pub mod http;
pub mod metrics;
pub mod mqtt;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::Serialize;

pub use http::HttpSettings;
pub use metrics::Metrics;
pub use mqtt::MqttSettings;

use crate::run::Decided;
use crate::{Error, Result};

/// A source that showed no frame for this long is not streaming (`/healthz`).
pub const STALE: Duration = Duration::from_secs(10);

/// What the run loop tells the network outputs, and what they read back.
pub struct Hub {
    state: Mutex<State>,
    /// Counts a new result (and frame); the preview streams wait on it.
    results: tokio::sync::watch::Sender<u64>,
    pub metrics: Metrics,
    /// The MQTT client's queue, once connected to the loop ([`Hub::attach_mqtt`]).
    mqtt: Mutex<Option<Arc<mqtt::Publisher>>>,
    /// Whether results carry their frame (only the HTTP preview needs it).
    keeps_frames: bool,
}

#[derive(Default)]
struct State {
    model_loaded: bool,
    /// Results so far.
    results: u64,
    /// When the source last showed a frame.
    last_frame: Option<Instant>,
    last_result: Option<Instant>,
    /// The newest result as `pinsight run` prints it.
    result_json: Option<Arc<str>>,
    /// The frame of the newest result and what to draw on it.
    frame: Option<Arc<Shown>>,
}

/// A frame as the preview shows it.
pub struct Shown {
    /// The result's number (1 for the first).
    pub result: u64,
    pub image: RgbImage,
    /// The label, or why there is none, with its probability.
    pub caption: String,
}

/// What `/healthz` answers.
#[derive(Debug, Serialize)]
pub struct Health {
    pub healthy: bool,
    pub model_loaded: bool,
    pub camera_streaming: bool,
    pub last_result_age_seconds: Option<f64>,
    pub results: u64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("keeps_frames", &self.keeps_frames)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new(keeps_frames: bool) -> Hub {
        Hub {
            state: Mutex::default(),
            results: tokio::sync::watch::Sender::new(0),
            metrics: Metrics::default(),
            mqtt: Mutex::new(None),
            keeps_frames,
        }
    }

    pub fn model_loaded(&self) {
        self.lock().model_loaded = true;
    }

    /// The source showed a frame captured at `at` (or, waiting, that it still captures).
    pub fn frame_seen(&self, at: Instant) {
        let mut state = self.lock();
        state.last_frame = Some(state.last_frame.map_or(at, |last| last.max(at)));
    }

    /// A result, from `frames` frames, the last of which is `image`.
    pub fn result(&self, result: &Decided, frames: u64, image: &RgbImage) {
        let json: Arc<str> = match serde_json::to_string(result) {
            Ok(json) => json.into(),
            Err(e) => {
                log::warn!("network outputs: cannot serialise a result: {e}");
                return;
            }
        };
        self.metrics.result(result, frames);
        if let Some(publisher) = &*self.mqtt.lock().unwrap_or_else(|e| e.into_inner()) {
            publisher.result(&json, result.label.as_deref(), &self.metrics);
        }
        // The copy is made outside the lock, which HTTP handlers take too.
        let image = self.keeps_frames.then(|| image.clone());
        let number = {
            let mut state = self.lock();
            state.results += 1;
            state.last_result = Some(Instant::now());
            state.result_json = Some(json);
            if let Some(image) = image {
                state.frame = Some(Arc::new(Shown {
                    result: state.results,
                    image,
                    caption: caption(result),
                }));
            }
            state.results
        };
        self.results.send_replace(number);
    }

    pub fn health(&self, now: Instant) -> Health {
        let state = self.lock();
        let camera_streaming = state
            .last_frame
            .is_some_and(|at| now.saturating_duration_since(at) < STALE);
        Health {
            healthy: state.model_loaded && camera_streaming,
            model_loaded: state.model_loaded,
            camera_streaming,
            last_result_age_seconds: state
                .last_result
                .map(|at| now.saturating_duration_since(at).as_secs_f64()),
            results: state.results,
        }
    }

    pub fn result_json(&self) -> Option<Arc<str>> {
        self.lock().result_json.clone()
    }

    pub fn shown(&self) -> Option<Arc<Shown>> {
        self.lock().frame.clone()
    }

    /// The number of the newest result, changing with each new one.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.results.subscribe()
    }

    fn attach_mqtt(&self, publisher: Arc<mqtt::Publisher>) {
        *self.mqtt.lock().unwrap_or_else(|e| e.into_inner()) = Some(publisher);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `label 87%`, or the best guess and that it is below the threshold.
fn caption(result: &Decided) -> String {
    let best = result.top.first();
    match (&result.label, best) {
        (Some(label), Some(best)) => format!("{label} {:.0}%", 100.0 * best.score),
        (None, Some(best)) => format!("? ({} {:.0}%)", best.label, 100.0 * best.score),
        (_, None) => "?".into(),
    }
}

/// The network outputs of a run, running on their own thread.
pub struct Network {
    hub: Arc<Hub>,
    mqtt: Option<MqttSettings>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// Ends the tasks: HTTP stops serving, MQTT says it is offline and disconnects.
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    mqtt_done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Network {
    /// Starts what `http` asks for now (so that `/healthz` answers while the model loads);
    /// MQTT starts with [`Network::start_mqtt`], once the head's labels are known. None when
    /// neither is configured: no thread, no socket.
    pub fn start(
        http: Option<&HttpSettings>,
        mqtt: Option<&MqttSettings>,
    ) -> Result<Option<Network>> {
        if http.is_none() && mqtt.is_none() {
            return Ok(None);
        }
        let hub = Arc::new(Hub::new(http.is_some()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2)
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the network runtime: {e}")))?;
        let runtime = Arc::new(runtime);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = http
            .map(|settings| {
                http::Server::bind(settings, hub.clone(), stopped.clone(), mqtt.is_some())
            })
            .transpose()?;
        let thread = {
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name("network".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        if let Some(server) = server {
                            server.serve().await;
                        } else {
                            let mut stopped = stopped;
                            let _ = stopped.wait_for(|stop| *stop).await;
                        }
                    })
                })
                .map_err(|e| Error::Internal(format!("cannot start the network thread: {e}")))?
        };
        Ok(Some(Network {
            hub,
            mqtt: mqtt.cloned(),
            runtime,
            stop,
            thread: Some(thread),
            mqtt_done: None,
        }))
    }

    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Connects to the broker (in the background: a broker that is away is tried again and
    /// again) with state topics for `classes` ([`MqttSettings::classes_for`]), and gives the
    /// hub its queue.
    pub fn start_mqtt(&mut self, classes: &[String]) -> Result<()> {
        let Some(settings) = &self.mqtt else {
            return Ok(());
        };
        let (publisher, done) = mqtt::start(
            settings,
            classes,
            &self.runtime,
            self.stop.subscribe(),
            self.hub.clone(),
        )?;
        self.hub.attach_mqtt(publisher);
        self.mqtt_done = Some(done);
        Ok(())
    }

    /// Ends the network outputs: MQTT sends what it has queued (for at most `MQTT_FLUSH` while
    /// connected), says it is offline and disconnects; HTTP closes.
    pub fn finish(mut self) {
        self.stop.send_replace(true);
        if let Some(done) = self.mqtt_done.take() {
            // The network thread may be ending: this thread drives the runtime meanwhile.
            let waited = self
                .runtime
                .block_on(async { tokio::time::timeout(mqtt::FLUSH, done).await });
            if waited.is_err() {
                log::warn!("mqtt: the broker did not take the last results in time");
            }
        }
        let counts = self.hub.metrics.mqtt_counts();
        if self.mqtt.is_some() {
            log::info!(
                "mqtt: {} results queued, {} dropped while the queue was full, {} messages \
                 acknowledged by the broker",
                counts.queued,
                counts.dropped,
                counts.acknowledged
            );
        }
        // The server ends its streams on the stop; a thread still busy after a second is left
        // to the process's exit.
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// A secret as `pinsight config` shows it: whether it is set, never what it is.
fn secret<S: serde::Serializer>(
    value: &Option<String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("(set)"),
        None => s.serialize_none(),
    }
}
