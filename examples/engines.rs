//! Times pinsight's backbone engines on one photo, 1 thread: model ready (load), first result,
//! and the median inference time of N further runs (preprocessing is timed apart and left
//! out); with two engines, the cosine between their features.
//!
//!     cargo run --release --example engines -- PHOTO [RUNS] [ENGINES] [BACKBONE]
//!     cargo run --release --example engines -- samples/coffee.png 30 tract,int8
//!
//! ENGINES is a comma-separated list of `tract`, `int8`, `auto` (default `tract,int8`);
//! BACKBONE defaults to the int8 EfficientNet-Lite0. For instruction counts under QEMU (see
//! ../shared/tools/qemu-insn), run one engine with RUNS 0 and RUNS 10: the difference over 10
//! is one preprocessing and one inference (`pinsight bench --model-only`, which
//! scripts/insn-count runs, counts inference alone).

use std::path::Path;
use std::time::Instant;

use pinsight::model::{Backbone, Engine};

fn main() {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    let photo = args
        .get(1)
        .expect("usage: engines PHOTO [RUNS] [ENGINES] [BACKBONE]");
    let runs: usize = args.get(2).map_or(10, |s| s.parse().expect("RUNS"));
    let engines: Vec<Engine> = args
        .get(3)
        .map_or("tract,int8", String::as_str)
        .split(',')
        .map(|e| e.parse().expect("ENGINES"))
        .collect();
    let backbone = args.get(4).map_or(
        "models/efficientnet-lite0/backbone-int8.onnx",
        String::as_str,
    );
    let image = pinsight::decode::load_rgb(Path::new(photo)).expect("a photo");
    let mut all = Vec::new();
    for engine in engines {
        let started = Instant::now();
        let model = Backbone::load_with(Path::new(backbone), engine).expect("a backbone");
        let ready = started.elapsed();
        let features = model.features_of(&image).expect("features");
        let first = started.elapsed();
        let mut times: Vec<f64> = (0..runs)
            .map(|_| model.extract(&image).expect("features").inference_ms)
            .collect();
        times.sort_by(f64::total_cmp);
        let kernels = model
            .kernels()
            .map_or(String::new(), |k| format!(", {k} kernels"));
        println!(
            "{engine} (runs on {}{kernels}): ready {:.1} ms, first result {:.1} ms, median {:.2} ms of {runs}",
            model.engine(),
            ready.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        );
        all.push(features);
    }
    if let [a, b] = &all[..] {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        println!("cosine between the two: {:.6}", dot / (norm(a) * norm(b)));
    }
}
