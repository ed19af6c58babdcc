//! What `/metrics` reports, in the Prometheus text format (version 0.0.4): counters of frames
//! and results, a histogram of each stage's time, the inference time's median and 99th
//! percentile over the last [`WINDOW`] frames, the process's resident memory, the CPU's
//! temperature where `/sys/class/thermal` has it, the MQTT queue's counts and what `[keep]`
//! kept ([`crate::keep`]). Every name
//! starts with `pinsight_`; times are in seconds, sizes in bytes (README.md, "Metrics").

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::keep::KeepCounts;
use crate::run::Decided;

/// Frames whose inference time the quantiles are taken over.
pub const WINDOW: usize = 1000;

/// Upper bounds of the stage histograms' buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The stages a result line times (`ms` in a result), in its order.
const STAGES: [&str; 4] = ["capture", "convert", "inference", "decide"];

#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
    mqtt: MqttCounts,
    /// Clients watching `/stream.mjpeg` now.
    pub stream_clients: AtomicU64,
    /// The keeper's counts, when the run keeps unsure frames.
    keep: OnceLock<Arc<KeepCounts>>,
}

#[derive(Default)]
struct Counts {
    frames: u64,
    results: u64,
    /// Results that were unknown.
    unknown: u64,
    skipped: u64,
    dropped: u64,
    stages: [Histogram; 4],
    /// Seconds of inference a frame, newest last.
    inference: VecDeque<f64>,
    inference_sum: f64,
}

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bound of [`BUCKETS`] (not cumulative).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// The MQTT client's counts.
#[derive(Default)]
pub struct MqttCounts {
    pub connected: AtomicBool,
    pub connections: AtomicU64,
    /// Results put on the queue.
    pub queued: AtomicU64,
    /// Results not put on the queue because it was full (the broker away for long).
    pub dropped: AtomicU64,
    /// Messages the broker acknowledged (results, states, discovery, availability).
    pub acknowledged: AtomicU64,
}

/// A copy of [`MqttCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttTotals {
    pub queued: u64,
    pub dropped: u64,
    pub acknowledged: u64,
}

/// What the process and the machine report alongside the run's own counts.
pub struct Gauges {
    pub model_loaded: bool,
    pub camera_streaming: bool,
    pub last_result_age: Option<f64>,
}

impl Metrics {
    /// Counts a result of `frames` frames.
    pub fn result(&self, result: &Decided, frames: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.frames += frames;
        counts.results += 1;
        counts.unknown += u64::from(result.unknown);
        counts.skipped = result.skipped;
        counts.dropped = result.dropped;
        let ms = &result.ms;
        for (histogram, ms) in
            counts
                .stages
                .iter_mut()
                .zip([ms.capture, ms.convert(), ms.inference, ms.decide])
        {
            histogram.observe(ms / 1e3);
        }
        let per_frame = ms.inference / 1e3 / frames.max(1) as f64;
        if counts.inference.len() == WINDOW {
            counts.inference.pop_front();
        }
        counts.inference.push_back(per_frame);
        counts.inference_sum += per_frame * frames as f64;
    }

    /// Reports `counts` too: the run keeps unsure frames.
    pub fn count_kept(&self, counts: Arc<KeepCounts>) {
        let _ = self.keep.set(counts);
    }

    pub fn mqtt(&self) -> &MqttCounts {
        &self.mqtt
    }

    pub fn mqtt_counts(&self) -> MqttTotals {
        MqttTotals {
            queued: self.mqtt.queued.load(Ordering::Relaxed),
            dropped: self.mqtt.dropped.load(Ordering::Relaxed),
            acknowledged: self.mqtt.acknowledged.load(Ordering::Relaxed),
        }
    }

    /// The text `/metrics` answers.
    pub fn render(&self, gauges: &Gauges, with_mqtt: bool) -> String {
        let mut out = String::new();
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP pinsight_{name} {help}");
            let _ = writeln!(out, "# TYPE pinsight_{name} {kind}");
            for (suffix, value) in samples {
                let _ = writeln!(out, "pinsight_{name}{suffix} {}", number(*value));
            }
        };
        let one = |value: f64| vec![(String::new(), value)];
        metric(
            "frames_total",
            "counter",
            "Frames classified.",
            &one(counts.frames as f64),
        );
        metric(
            "results_total",
            "counter",
            "Results decided (one a frame, or one a triggered burst).",
            &one(counts.results as f64),
        );
        metric(
            "results_unknown_total",
            "counter",
            "Results that looked like none of the head's classes (label null, unknown true).",
            &one(counts.unknown as f64),
        );
        metric(
            "frames_skipped_total",
            "counter",
            "Frames skipped because they could not be converted.",
            &one(counts.skipped as f64),
        );
        metric(
            "frames_dropped_total",
            "counter",
            "Frames the camera delivered that a newer frame replaced before classification.",
            &one(counts.dropped as f64),
        );

        let mut samples = Vec::new();
        for (stage, histogram) in STAGES.iter().zip(&counts.stages) {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                samples.push((
                    format!("_bucket{{stage=\"{stage}\",le=\"{}\"}}", number(*bound)),
                    cumulative as f64,
                ));
            }
            samples.push((
                format!("_bucket{{stage=\"{stage}\",le=\"+Inf\"}}"),
                histogram.count as f64,
            ));
            samples.push((format!("_sum{{stage=\"{stage}\"}}"), histogram.sum));
            samples.push((
                format!("_count{{stage=\"{stage}\"}}"),
                histogram.count as f64,
            ));
        }
        metric(
            "stage_duration_seconds",
            "histogram",
            "Time each stage took for a result (summed over a triggered burst).",
            &samples,
        );

        let mut sorted: Vec<f64> = counts.inference.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let mut samples: Vec<(String, f64)> = [0.5, 0.99]
            .into_iter()
            .filter_map(|q| Some((format!("{{quantile=\"{q}\"}}"), quantile(&sorted, q)?)))
            .collect();
        samples.push(("_sum".into(), counts.inference_sum));
        samples.push(("_count".into(), counts.frames as f64));
        metric(
            "inference_duration_seconds",
            "summary",
            "Inference time a frame; quantiles over the last 1000 frames.",
            &samples,
        );
        drop(counts);

        metric(
            "model_loaded",
            "gauge",
            "1 once the model is loaded.",
            &one(f64::from(u8::from(gauges.model_loaded))),
        );
        metric(
            "camera_streaming",
            "gauge",
            "1 while the source shows frames (one within the last 10 seconds).",
            &one(f64::from(u8::from(gauges.camera_streaming))),
        );
        if let Some(age) = gauges.last_result_age {
            metric(
                "last_result_age_seconds",
                "gauge",
                "Seconds since the newest result.",
                &one(age),
            );
        }
        if let Some(bytes) = resident_bytes() {
            metric(
                "resident_memory_bytes",
                "gauge",
                "Resident memory of the pinsight process.",
                &one(bytes as f64),
            );
        }
        let temperatures = temperatures();
        if !temperatures.is_empty() {
            metric(
                "temperature_celsius",
                "gauge",
                "Temperatures the kernel's thermal zones report (the CPU's among them).",
                &temperatures,
            );
        }
        metric(
            "stream_clients",
            "gauge",
            "Clients watching /stream.mjpeg.",
            &one(self.stream_clients.load(Ordering::Relaxed) as f64),
        );
        if with_mqtt {
            let mqtt = &self.mqtt;
            let load = |n: &AtomicU64| one(n.load(Ordering::Relaxed) as f64);
            metric(
                "mqtt_connected",
                "gauge",
                "1 while connected to the MQTT broker.",
                &one(f64::from(u8::from(mqtt.connected.load(Ordering::Relaxed)))),
            );
            metric(
                "mqtt_connections_total",
                "counter",
                "Connections made to the MQTT broker.",
                &load(&mqtt.connections),
            );
            metric(
                "mqtt_results_queued_total",
                "counter",
                "Results put on the MQTT queue.",
                &load(&mqtt.queued),
            );
            metric(
                "mqtt_results_dropped_total",
                "counter",
                "Results dropped because the MQTT queue was full.",
                &load(&mqtt.dropped),
            );
            metric(
                "mqtt_messages_acknowledged_total",
                "counter",
                "Messages the MQTT broker acknowledged.",
                &load(&mqtt.acknowledged),
            );
        }
        if let Some(keep) = self.keep.get() {
            let kept = keep.totals();
            for (name, kind, help, value) in [
                (
                    "kept_total",
                    "counter",
                    "Frames below the threshold saved to the keep folder.",
                    kept.kept,
                ),
                (
                    "kept_removed_total",
                    "counter",
                    "Kept frames removed, oldest first, to stay within the keep folder's budget.",
                    kept.removed,
                ),
                (
                    "kept_dropped_total",
                    "counter",
                    "Frames below the threshold not kept because the writer was busy.",
                    kept.dropped,
                ),
                (
                    "kept_failed_total",
                    "counter",
                    "Frames below the threshold that could not be written.",
                    kept.failed,
                ),
                (
                    "kept_files",
                    "gauge",
                    "Kept frames in the keep folder now.",
                    kept.files,
                ),
                (
                    "kept_bytes",
                    "gauge",
                    "Bytes of the kept frames in the keep folder now.",
                    kept.bytes,
                ),
            ] {
                metric(name, kind, help, &one(value as f64));
            }
        }
        out
    }
}

/// The `q` quantile of `sorted` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[((q * last as f64).round() as usize).min(last)])
}

/// A sample value as the text format writes it.
fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else if value.is_nan() {
        "NaN".into()
    } else if value > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

/// The process's resident set, from `/proc/self/statm` (in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Each thermal zone's temperature, labelled with the zone and its type
/// (`/sys/class/thermal/thermal_zone*/{temp,type}`, millidegrees).
fn temperatures() -> Vec<(String, f64)> {
    let Ok(zones) = std::fs::read_dir("/sys/class/thermal") else {
        return Vec::new();
    };
    let mut samples: Vec<(String, f64)> = zones
        .flatten()
        .filter(|zone| {
            zone.file_name()
                .to_string_lossy()
                .starts_with("thermal_zone")
        })
        .filter_map(|zone| {
            let path = zone.path();
            let millis: f64 = std::fs::read_to_string(path.join("temp"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let kind = std::fs::read_to_string(path.join("type")).unwrap_or_default();
            Some((
                format!(
                    "{{zone=\"{}\",type=\"{}\"}}",
                    escape(&zone.file_name().to_string_lossy()),
                    escape(kind.trim())
                ),
                millis / 1e3,
            ))
        })
        .collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    samples
}

/// A label value with `\`, `"` and line breaks escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&sorted, 0.5), Some(51.0));
        assert_eq!(quantile(&sorted, 0.99), Some(99.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_text() {
        let metrics = Metrics::default();
        {
            let mut counts = metrics.counts.lock().unwrap();
            counts.stages[2].observe(0.004);
            counts.stages[2].observe(0.2);
            counts.stages[2].observe(20.0);
        }
        let gauges = Gauges {
            model_loaded: true,
            camera_streaming: false,
            last_result_age: None,
        };
        let text = metrics.render(&gauges, false);
        for line in [
            "pinsight_stage_duration_seconds_bucket{stage=\"inference\",le=\"0.001\"} 0",
            "pinsight_stage_duration_seconds_bucket{stage=\"inference\",le=\"0.005\"} 1",
            "pinsight_stage_duration_seconds_bucket{stage=\"inference\",le=\"0.25\"} 2",
            "pinsight_stage_duration_seconds_bucket{stage=\"inference\",le=\"10\"} 2",
            "pinsight_stage_duration_seconds_bucket{stage=\"inference\",le=\"+Inf\"} 3",
            "pinsight_stage_duration_seconds_count{stage=\"inference\"} 3",
            "pinsight_model_loaded 1",
            "pinsight_camera_streaming 0",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("mqtt"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
