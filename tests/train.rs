//! Training heads on synthetic features: what they learn, that a seed fixes the result, that
//! early stopping and class weights do what they say, and that bad data is refused.

use pinsight::train::{
    ClassWeights, Dataset, Dense, EpochReport, Head, HeadKind, Optimizer, TrainConfig, TrainError,
    evaluate, train, train_with_progress,
};

/// SplitMix64 and Box–Muller: test data that depends only on the seed.
struct Gaussian(u64);

impl Gaussian {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// Gaussian blobs: class c's examples are centre_c + noise · N(0, 1) per feature. The features
/// sit on an offset and per-feature scale, as pooled backbone features do, so the test also
/// exercises standardisation.
struct Blobs {
    centres: Vec<Vec<f32>>,
    noise: f32,
}

impl Blobs {
    fn new(classes: usize, dim: usize, separation: f32, noise: f32, seed: u64) -> Blobs {
        let mut rng = Gaussian(seed);
        let centres = (0..classes)
            .map(|_| (0..dim).map(|_| separation * rng.normal()).collect())
            .collect();
        Blobs { centres, noise }
    }

    fn dim(&self) -> usize {
        self.centres[0].len()
    }

    /// `counts[c]` examples of class c, classes interleaved.
    fn sample(&self, counts: &[usize], seed: u64) -> Dataset {
        let mut rng = Gaussian(seed);
        let dim = self.dim();
        let mut features = Vec::new();
        let mut labels = Vec::new();
        let most = counts.iter().copied().max().unwrap();
        for i in 0..most {
            for (class, &count) in counts.iter().enumerate() {
                if i < count {
                    features.extend(self.centres[class].iter().enumerate().map(|(j, &m)| {
                        let scale = 0.1 + (j % 7) as f32;
                        2.0 + scale * (m + self.noise * rng.normal())
                    }));
                    labels.push(class);
                }
            }
        }
        Dataset::new(features, labels, dim, counts.len()).unwrap()
    }
}

fn hidden() -> HeadKind {
    HeadKind::Hidden {
        units: 32,
        dropout: 0.2,
    }
}

fn weight_bits(head: &Head) -> Vec<u32> {
    head.hidden
        .iter()
        .chain([&head.output])
        .flat_map(|d| d.weights.iter().chain(&d.bias))
        .map(|x| x.to_bits())
        .collect()
}

fn learns_blobs(config: TrainConfig) {
    let blobs = Blobs::new(4, 128, 0.4, 1.0, 11);
    let training = blobs.sample(&[40; 4], 1);
    let validation = blobs.sample(&[25; 4], 2);
    let trained = train(&training, &validation, &config).unwrap();
    let best = trained.report.best();
    assert!(
        best.validation_accuracy >= 0.95,
        "{config:?}: {:#?}",
        trained.report
    );
    // The exported head, on raw features, agrees with what training measured.
    let evaluation = evaluate(
        &trained.head,
        &validation,
        Some(&trained.report.class_weights),
    )
    .unwrap();
    assert!(evaluation.accuracy >= 0.95, "{evaluation:?}");
    assert!((evaluation.loss - best.validation_loss).abs() <= 1e-4 * (1.0 + best.validation_loss));
    assert_eq!(trained.head.dim(), 128);
    assert_eq!(trained.head.classes(), 4);
}

#[test]
fn a_linear_head_separates_gaussian_blobs() {
    learns_blobs(TrainConfig::default());
}

#[test]
fn a_hidden_layer_head_separates_gaussian_blobs() {
    learns_blobs(TrainConfig {
        head: hidden(),
        ..TrainConfig::default()
    });
}

#[test]
fn sgd_with_momentum_separates_gaussian_blobs() {
    learns_blobs(TrainConfig {
        optimizer: Optimizer::Sgd {
            lr: 0.01,
            momentum: 0.9,
        },
        ..TrainConfig::default()
    });
}

#[test]
fn the_same_seed_gives_the_same_bits_and_another_seed_other_weights() {
    let blobs = Blobs::new(3, 64, 0.3, 1.0, 5);
    let training = blobs.sample(&[30, 25, 20], 1);
    let validation = blobs.sample(&[10; 3], 2);
    for head in [HeadKind::Linear, hidden()] {
        let config = TrainConfig {
            head,
            epochs: 15,
            seed: 42,
            ..TrainConfig::default()
        };
        let first = train(&training, &validation, &config).unwrap();
        let second = train(&training, &validation, &config).unwrap();
        assert_eq!(weight_bits(&first.head), weight_bits(&second.head));
        assert_eq!(first.report, second.report);

        let other = TrainConfig { seed: 43, ..config };
        let third = train(&training, &validation, &other).unwrap();
        assert_ne!(weight_bits(&first.head), weight_bits(&third.head));
    }
}

/// Two overlapping classes, 8 examples each in 50 dimensions, no weight decay: the training
/// set is separable, so the weights grow without bound once it is separated and the validation
/// loss, after a few epochs of real learning, climbs.
fn overfitting_problem() -> (Dataset, Dataset, TrainConfig) {
    let blobs = Blobs::new(2, 50, 0.2, 1.0, 3);
    let config = TrainConfig {
        epochs: 150,
        patience: None,
        weight_decay: 0.0,
        batch_size: 8,
        optimizer: Optimizer::Adam { lr: 1e-2 },
        standardize: true,
        ..TrainConfig::default()
    };
    (blobs.sample(&[8, 8], 1), blobs.sample(&[50, 50], 2), config)
}

#[test]
fn early_stopping_returns_the_head_of_the_best_epoch() {
    let (training, validation, config) = overfitting_problem();
    let trained = train(&training, &validation, &config).unwrap();
    let report = &trained.report;
    let last = report.epochs.last().unwrap();
    assert_eq!(report.epochs.len(), 150);
    assert!(!report.stopped_early);
    assert!(
        1 < report.best_epoch && report.best_epoch < 150,
        "{report:#?}"
    );
    assert!(
        last.validation_loss > 1.5 * report.best().validation_loss,
        "the validation loss rises: {report:#?}"
    );
    assert!(last.train_loss < report.best().train_loss);
    let lowest = report
        .epochs
        .iter()
        .map(|e| e.validation_loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(report.best().validation_loss, lowest);

    // The returned head is the best epoch's, not the last one's.
    let loss = evaluate(&trained.head, &validation, Some(&report.class_weights))
        .unwrap()
        .loss;
    let best = report.best().validation_loss;
    println!(
        "best epoch {} validation loss {best}, last {}, exported head {loss}",
        report.best_epoch, last.validation_loss
    );
    assert!((loss - best).abs() <= 1e-4 * best, "{loss} vs {best}");
}

#[test]
fn patience_stops_training_that_many_epochs_after_the_best() {
    let (training, validation, config) = overfitting_problem();
    let config = TrainConfig {
        patience: Some(5),
        ..config
    };
    let trained = train(&training, &validation, &config).unwrap();
    let report = &trained.report;
    assert!(report.stopped_early);
    assert_eq!(report.epochs.len(), report.best_epoch + 5);
    let full = train(
        &training,
        &validation,
        &TrainConfig {
            patience: None,
            ..config
        },
    )
    .unwrap();
    // Up to the stop, the two runs are the same run.
    assert_eq!(report.epochs[..], full.report.epochs[..report.epochs.len()]);
}

#[test]
fn balanced_class_weights_raise_the_recall_of_a_rare_class() {
    let blobs = Blobs::new(2, 64, 0.12, 1.0, 8);
    let training = blobs.sample(&[180, 20], 1);
    let validation = blobs.sample(&[100, 100], 2);
    let recall = |class_weights| {
        let config = TrainConfig {
            class_weights,
            ..TrainConfig::default()
        };
        let trained = train(&training, &validation, &config).unwrap();
        let evaluation = evaluate(&trained.head, &validation, None).unwrap();
        (trained.report.class_weights, evaluation.recall[1].unwrap())
    };
    let (unweighted, plain) = recall(ClassWeights::None);
    let (balanced, weighted) = recall(ClassWeights::Balanced);
    let (auto, _) = recall(ClassWeights::Auto);
    assert_eq!(unweighted, [1.0, 1.0]);
    assert_eq!(auto, balanced, "90/10 is unbalanced enough for Auto");
    println!("rare-class recall {plain} unweighted, {weighted} balanced");
    assert!(
        weighted >= plain + 0.1,
        "rare-class recall {plain} unweighted, {weighted} balanced"
    );
}

#[test]
fn forward_matches_a_hand_computation() {
    let linear = Head {
        hidden: None,
        output: Dense {
            inputs: 3,
            outputs: 2,
            weights: vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0],
            bias: vec![0.5, -1.0],
        },
    };
    let x = [1.0, -2.0, 0.5];
    // [1 - 4 + 1.5 + 0.5, -1 - 1 + 0 - 1]
    assert_eq!(linear.forward(&x), [-1.0, -3.0]);
    let p = linear.probabilities(&x);
    let e = (-2.0f32).exp();
    assert!((p[0] - 1.0 / (1.0 + e)).abs() < 1e-6 && (p[1] - e / (1.0 + e)).abs() < 1e-6);

    // The same layer as a hidden layer: on [1, 2, 0] its units are 1 + 4 + 0.5 = 5.5 and
    // -1 + 1 - 1 = -1, which the ReLU zeroes; then 2 · 5.5 + 1 · 0 + 0.25.
    let deep = Head {
        hidden: Some(linear.output.clone()),
        output: Dense {
            inputs: 2,
            outputs: 1,
            weights: vec![2.0, 1.0],
            bias: vec![0.25],
        },
    };
    assert_eq!(deep.forward(&[1.0, 2.0, 0.0]), [11.25]);
}

#[test]
fn progress_reports_each_epoch_as_the_final_report_does() {
    let blobs = Blobs::new(3, 32, 0.5, 1.0, 9);
    let training = blobs.sample(&[20; 3], 1);
    let validation = blobs.sample(&[10; 3], 2);
    let mut seen: Vec<EpochReport> = Vec::new();
    let config = TrainConfig {
        epochs: 12,
        ..TrainConfig::default()
    };
    let trained =
        train_with_progress(&training, &validation, &config, |e| seen.push(e.clone())).unwrap();
    assert_eq!(seen, trained.report.epochs);
    assert_eq!(
        seen.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        (1..=seen.len()).collect::<Vec<_>>()
    );
}

#[test]
fn bad_data_is_refused_with_what_to_do() {
    let message = |result: Result<Dataset, TrainError>| result.unwrap_err().to_string();
    assert!(message(Dataset::new(vec![0.0; 5], vec![0, 1], 3, 2)).contains("5 values"));
    assert!(message(Dataset::new(vec![0.0; 6], vec![0, 2], 3, 2)).contains("label 2"));
    let nan = message(Dataset::new(
        vec![0.0, f32::NAN, 0.0, 0.0],
        vec![0, 1],
        2,
        2,
    ));
    assert!(
        nan.contains("example 0") && nan.contains("extract"),
        "{nan}"
    );

    let only_class_0 = Dataset::new(vec![0.0; 4], vec![0, 0], 2, 2).unwrap();
    let both = Dataset::new(vec![0.0, 1.0, 1.0, 0.0], vec![0, 1], 2, 2).unwrap();
    let error = train(&only_class_0, &both, &TrainConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("class 1 has no training examples"),
        "{error}"
    );

    let wider = Dataset::new(vec![0.0; 6], vec![0, 1], 3, 2).unwrap();
    let error = train(&both, &wider, &TrainConfig::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("differ"), "{error}");

    let empty = Dataset::new(Vec::new(), Vec::new(), 2, 2).unwrap();
    let error = train(&both, &empty, &TrainConfig::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("validation set is empty"), "{error}");
}
