//! The int8 engine on the whole backbone against onnxruntime on the same int8 file.
//!
//! tests/fixtures/int8 holds 224 × 224 crops of CC0 photos and onnxruntime's pooled features of
//! each (written by models/int8_reference.py). The crops' bytes are exactly the backbone's first
//! u8 tensor, so both engines see the same integers.

mod common;

use std::path::Path;

use pinsight::model::{Backbone, CpuFeatures, Engine, KernelSet};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    backbone_sha256: String,
    features: std::collections::BTreeMap<String, Vec<f32>>,
}

/// The sample photos the whole-photo tests classify.
const PHOTOS: [&str; 3] = [
    "samples/coffee.png",
    "samples/chelsea.png",
    "samples/rocket.jpg",
];

/// How many photos a test gives tract's float path: all of them natively; under an emulator,
/// where tract takes seconds a photo, the first three, which show that its ARM kernels run this
/// graph (the int8 engine's kernels get every photo in the other tests).
fn tract_photos() -> usize {
    if common::emulated() { 3 } else { usize::MAX }
}

fn reference(dir: &Path) -> Reference {
    let json = std::fs::read(dir.join("features.json")).unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// The input tensor of a 224 × 224 crop: `(v − 127) / 128`, RGB planes.
fn tensor(crop: &Path) -> Vec<f32> {
    let rgb = image::open(crop).unwrap().to_rgb8();
    assert_eq!(rgb.dimensions(), (224, 224), "{}", crop.display());
    let mut tensor = vec![0f32; 3 * 224 * 224];
    for (p, pixel) in rgb.pixels().enumerate() {
        for c in 0..3 {
            tensor[c * 224 * 224 + p] = (f32::from(pixel[c]) - 127.0) / 128.0;
        }
    }
    tensor
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Cosines of `engine`'s features against onnxruntime's, one per crop in `dir` (the first
/// `limit` of them, in name order).
fn cosines(dir: &Path, engine: Engine, limit: usize) -> Vec<(String, f64)> {
    let reference = reference(dir);
    let backbone = Backbone::load_with(&common::int8_backbone(), engine).unwrap();
    assert_eq!(backbone.engine(), engine);
    assert_eq!(
        backbone.sha256(),
        reference.backbone_sha256,
        "{} was made for another backbone: run models/int8_reference.py again",
        dir.join("features.json").display()
    );
    reference
        .features
        .iter()
        .take(limit)
        .map(|(name, expected)| {
            let features = backbone.features(&tensor(&dir.join(name))).unwrap();
            assert_eq!(features.len(), expected.len());
            (name.clone(), cosine(&features, expected))
        })
        .collect()
}

fn report(what: &str, cosines: &[(String, f64)]) -> f64 {
    let min = cosines.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
    let mean = cosines.iter().map(|c| c.1).sum::<f64>() / cosines.len() as f64;
    println!(
        "{what}: cosine to onnxruntime over {} crops: min {min:.6}, mean {mean:.6}",
        cosines.len()
    );
    min
}

#[test]
fn int8_engine_features_match_onnxruntime() {
    let dir = common::repo().join("tests/fixtures/int8");
    let int8 = cosines(&dir, Engine::Int8, usize::MAX);
    for (name, cosine) in &int8 {
        assert!(
            cosine >= &0.999,
            "{name}: cosine {cosine:.6} to onnxruntime"
        );
    }
    report("int8 engine", &int8);
}

#[test]
fn int8_engine_is_closer_to_onnxruntime_than_tract() {
    let dir = common::repo().join("tests/fixtures/int8");
    let int8 = report("int8 engine", &cosines(&dir, Engine::Int8, tract_photos()));
    let tract = report(
        "tract engine",
        &cosines(&dir, Engine::Tract, tract_photos()),
    );
    assert!(
        tract >= 0.99,
        "tract's int8 emulation drifted: min cosine {tract:.6}"
    );
    assert!(int8 >= tract, "int8 engine {int8:.6} vs tract {tract:.6}");
}

#[test]
fn engines_report_what_runs() {
    let float = common::repo().join("models/efficientnet-lite0/backbone-float.onnx");
    let auto = Backbone::load_with(&float, Engine::Auto).unwrap();
    assert_eq!(
        auto.engine(),
        Engine::Tract,
        "a float backbone runs on tract"
    );
    let refused = Backbone::load_with(&float, Engine::Int8)
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("int8 engine cannot run it"), "{refused}");
    let auto = Backbone::load_with(&common::int8_backbone(), Engine::Auto).unwrap();
    // This project builds armv7 for a CPU with NEON (.cargo/config.toml), where build.rs makes
    // the int8 engine the default.
    let int8_by_default = std::hint::black_box(pinsight::model::INT8_BY_DEFAULT);
    assert!(
        int8_by_default,
        "the int8 engine is the default on {}",
        std::env::consts::ARCH
    );
    assert_eq!(
        auto.engine(),
        Engine::Int8,
        "the default for an int8 backbone here"
    );
    assert_eq!(auto.feature_len(), 1280);
    // The portable kernels lose to tract's float path on x86_64 (a CPU without AVX2), and
    // nowhere else.
    let portable =
        Backbone::load_on(&common::int8_backbone(), Engine::Auto, KernelSet::Portable).unwrap();
    let expected = if cfg!(target_arch = "x86_64") {
        Engine::Tract
    } else {
        Engine::Int8
    };
    assert_eq!(portable.engine(), expected, "auto on the portable kernels");
}

/// Every kernel set this machine can execute gives the whole backbone the same features, bit
/// for bit: each kernel matches the same reference exactly (tests/int8_kernels.rs).
#[test]
fn every_kernel_set_gives_the_same_features() {
    let dir = common::repo().join("tests/fixtures/int8");
    let reference = reference(&dir);
    let crop = reference.features.keys().next().expect("a crop");
    let input = tensor(&dir.join(crop));
    let features = |kernels: KernelSet| {
        let backbone = Backbone::load_on(&common::int8_backbone(), Engine::Int8, kernels).unwrap();
        assert_eq!(backbone.kernels(), Some(kernels));
        backbone.features(&input).unwrap()
    };
    let detected = CpuFeatures::detected();
    let expected = features(detected.kernels());
    for kernels in KernelSet::runnable() {
        assert!(
            features(kernels) == expected,
            "{crop}: the {kernels} kernels differ from the {} ones ({detected})",
            detected.kernels()
        );
    }
}

/// A photo goes from its RGB crop straight to the engine's u8 input (a table lookup a value);
/// the features are those of the float tensor the same crop makes, bit for bit, on every kernel
/// set this machine runs.
#[test]
fn the_crop_and_the_float_tensor_give_the_same_features() {
    use pinsight::decode::load_rgb;
    use pinsight::preprocess::Preprocessor;

    for kernels in KernelSet::runnable() {
        let backbone = Backbone::load_on(&common::int8_backbone(), Engine::Int8, kernels).unwrap();
        for photo in PHOTOS {
            let image = load_rgb(&common::repo().join(photo)).unwrap();
            let mut tensor = Vec::new();
            Preprocessor::default().tensor(&image, &mut tensor);
            assert!(
                backbone.features_of(&image).unwrap() == backbone.features(&tensor).unwrap(),
                "{photo} ({kernels})"
            );
        }
    }
}

/// The int8 engine splits its layers over threads by output: every probability of every
/// sample photo is the same bit for bit on 1, 2 and 3 threads, on every kernel set this machine
/// runs (checked through `pinsight classify`, one process each, as the thread count is fixed
/// per process).
#[test]
fn every_thread_count_gives_the_same_results() {
    let classify = |kernels: KernelSet, threads: u32| {
        let output = common::pinsight()
            .args(["classify", "--json", "--top", "1000", "--engine", "int8"])
            .arg("--threads")
            .arg(threads.to_string())
            .args(PHOTOS)
            .env("PINSIGHT_KERNELS", kernels.name())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{kernels}, {threads} threads: {output:?}"
        );
        // Each line without its timings.
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let mut result: serde_json::Value = serde_json::from_str(line).unwrap();
                result.as_object_mut().unwrap().remove("ms");
                result
            })
            .collect::<Vec<_>>()
    };
    for kernels in KernelSet::runnable() {
        let one = classify(kernels, 1);
        assert_eq!(one.len(), PHOTOS.len());
        assert_eq!(one[0]["top"].as_array().unwrap().len(), 1000);
        for threads in [2, 3] {
            assert!(
                classify(kernels, threads) == one,
                "{kernels}: {threads} threads differ from one"
            );
        }
    }
}

/// On held-out ImageNet photos, which stay outside the repository: run
/// `models/int8_reference.py --out DIR --imagenet ../shared/data/imagenet-val --count 100`, then
/// `PINSIGHT_INT8_REFERENCE=DIR cargo test --release --test int8_model -- --ignored --nocapture`.
#[test]
#[ignore = "needs PINSIGHT_INT8_REFERENCE, a folder written by models/int8_reference.py"]
fn int8_engine_matches_onnxruntime_on_held_out_photos() {
    let dir = std::env::var_os("PINSIGHT_INT8_REFERENCE").expect("PINSIGHT_INT8_REFERENCE");
    let int8 = cosines(Path::new(&dir), Engine::Int8, usize::MAX);
    let min = report("int8 engine", &int8);
    report(
        "tract engine",
        &cosines(Path::new(&dir), Engine::Tract, usize::MAX),
    );
    assert!(min >= 0.999, "min cosine {min:.6}");
}

/// The classifier on either engine gives each golden photo the same best label (under an
/// emulator, the first [`tract_photos`]).
#[test]
fn both_engines_rank_the_golden_photos_alike() {
    use pinsight::decode::load_rgb;
    use pinsight::model::Classifier;
    use pinsight::scores::top_k;

    let load = |engine| {
        Classifier::load_with(&common::int8_backbone(), &common::imagenet_head(), engine).unwrap()
    };
    let (int8, tract) = (load(Engine::Int8), load(Engine::Tract));
    assert_eq!(
        (int8.engine(), tract.engine()),
        (Engine::Int8, Engine::Tract)
    );
    let manifest =
        std::fs::read_to_string(common::repo().join("tests/fixtures/golden.tsv")).unwrap();
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(tract_photos())
    {
        let (photo, _) = line.split_once('\t').unwrap();
        let image = load_rgb(&common::repo().join(photo)).unwrap();
        let best = |c: &Classifier| {
            top_k(&c.classify(&image).unwrap().probabilities, c.labels(), 1)[0]
                .label
                .clone()
        };
        assert_eq!(best(&int8), best(&tract), "{photo}");
    }
}
