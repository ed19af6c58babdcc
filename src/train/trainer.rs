//! Training a head on backbone features: a linear softmax layer, or one hidden ReLU layer with
//! dropout and then a softmax layer, fitted to a few dozen labelled feature vectors per class.
//!
//! This module sees only feature vectors (one row per image, as the backbone pools them); it
//! knows nothing of images or tract, and runs on one thread so that a seed fixes every bit of
//! the result.
//!
//! - **Loss**: softmax cross-entropy, each example weighted by its class's weight
//!   ([`ClassWeights`]), averaged over the batch.
//! - **Optimiser**: [`Optimizer::Adam`] or [`Optimizer::Sgd`] with momentum, both with
//!   *decoupled* weight decay (AdamW style): every step multiplies each weight, not bias, by
//!   `1 − lr · weight_decay` before the gradient step.
//! - **Early stopping** on the validation loss (the same weighted cross-entropy, on the
//!   validation set): training stops after [`TrainConfig::patience`] epochs without a new lowest
//!   validation loss, and the head returned is always the one from the best epoch, stopped early
//!   or not. Loss rather than accuracy because with a few dozen validation images accuracy moves
//!   in coarse steps and ties for many epochs.
//! - **Cross-validation** (`crossval.rs`), for photos without a validation split: the weight
//!   decay and the epoch count chosen by stratified k-fold cross-validation, then [`fit`] on
//!   every example for that many epochs, without early stopping.
//! - **Standardisation** ([`TrainConfig::standardize`], off by default: on a few dozen photos a
//!   class it generalised worse than the raw features): features are shifted and scaled to mean 0
//!   and variance 1 over the training set while training, and the transform is folded into the
//!   first layer at the end, so the [`Head`] takes raw features. A feature that is constant over
//!   the training set gets weight 0.
//! - **Determinism**: initialisation, shuffling and dropout each draw from their own SplitMix64
//!   stream derived from [`TrainConfig::seed`]; the same data, settings and seed give
//!   bit-identical weights on the same machine and build.

mod crossval;
mod net;
mod optim;
mod standardize;

use serde::{Deserialize, Serialize};

pub use self::crossval::{
    CrossValidation, Grid, MAX_FOLDS, SettingScore, cross_validate, fold_count, stratified_folds,
};
use self::net::{Dropout, Workspace};
use self::optim::OptimizerState;
use self::standardize::Standardizer;
use super::rng::SplitMix64;

/// Labelled feature vectors: `features` holds `labels.len()` rows of `dim` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    features: Vec<f32>,
    labels: Vec<usize>,
    dim: usize,
    classes: usize,
}

impl Dataset {
    /// Checks the shape, that each label is below `classes`, and that every feature is finite.
    pub fn new(
        features: Vec<f32>,
        labels: Vec<usize>,
        dim: usize,
        classes: usize,
    ) -> Result<Dataset, TrainError> {
        if dim == 0 || classes < 2 {
            return Err(TrainError::Setting(format!(
                "a dataset needs at least one feature and two classes (got {dim} features and \
                 {classes} classes)"
            )));
        }
        if features.len() != labels.len() * dim {
            return Err(TrainError::Shape {
                values: features.len(),
                rows: labels.len(),
                dim,
            });
        }
        if let Some((row, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
            return Err(TrainError::LabelOutOfRange {
                row,
                label,
                classes,
            });
        }
        if let Some(at) = features.iter().position(|x| !x.is_finite()) {
            return Err(TrainError::NotFinite {
                row: at / dim,
                column: at % dim,
            });
        }
        Ok(Dataset {
            features,
            labels,
            dim,
            classes,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn features(&self) -> &[f32] {
        &self.features
    }

    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.features.chunks_exact(self.dim)
    }

    /// How many examples each class has.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        self.labels.iter().for_each(|&l| counts[l] += 1);
        counts
    }
}

/// The shape of the head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum HeadKind {
    /// One softmax layer on the features: logistic regression, the default.
    Linear,
    /// A hidden layer of `units` ReLUs, dropout at `dropout` (0 ≤ dropout < 1) on them while
    /// training, then a softmax layer.
    Hidden { units: usize, dropout: f32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    /// Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8) with bias correction.
    Adam { lr: f32 },
    /// SGD with heavy-ball momentum: v ← momentum · v + g, w ← w − lr · v.
    Sgd { lr: f32, momentum: f32 },
}

impl Optimizer {
    pub fn lr(&self) -> f32 {
        match *self {
            Optimizer::Adam { lr } | Optimizer::Sgd { lr, .. } => lr,
        }
    }
}

/// How much each class's examples count in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClassWeights {
    /// [`ClassWeights::Balanced`] when the largest class has more than 10% more training
    /// examples than the smallest, else [`ClassWeights::None`].
    Auto,
    /// Every example counts the same.
    None,
    /// Class c weighs n / (classes · count_c): each class contributes equally to the loss, and
    /// the weights average 1 over the training set.
    Balanced,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub head: HeadKind,
    pub optimizer: Optimizer,
    /// Decoupled: each step multiplies every weight (not bias) by 1 − lr · weight_decay.
    pub weight_decay: f32,
    /// The most epochs to train.
    pub epochs: usize,
    /// Stop after this many epochs without a lower validation loss; `None` trains all `epochs`.
    /// Either way the head from the best epoch is returned.
    pub patience: Option<usize>,
    pub batch_size: usize,
    pub seed: u64,
    pub class_weights: ClassWeights,
    /// Standardise features while training (folded into the exported head). Off by default:
    /// on a few dozen photos a class it generalised worse than the raw features.
    pub standardize: bool,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            head: HeadKind::Linear,
            optimizer: Optimizer::Adam { lr: 1e-2 },
            weight_decay: 1e-2,
            epochs: 100,
            patience: Some(10),
            batch_size: 32,
            seed: 0,
            class_weights: ClassWeights::Auto,
            standardize: false,
        }
    }
}

impl TrainConfig {
    fn check(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Setting(what));
        let lr = self.optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!(
                "the learning rate is {lr}; it must be above 0 (try 1e-3)"
            ));
        }
        if let Optimizer::Sgd { momentum, .. } = self.optimizer
            && !(0.0..1.0).contains(&momentum)
        {
            return bad(format!(
                "momentum is {momentum}; it must be in [0, 1) (try 0.9)"
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0)
            || lr * self.weight_decay >= 1.0
        {
            return bad(format!(
                "weight decay is {}; it must be at least 0 and below 1 / learning rate \
                 (try 1e-2 with Adam)",
                self.weight_decay
            ));
        }
        if let HeadKind::Hidden { units, dropout } = self.head {
            if units == 0 {
                return bad("the hidden layer has 0 units; give it at least 1 (try 128)".into());
            }
            if !(0.0..1.0).contains(&dropout) {
                return bad(format!(
                    "dropout is {dropout}; it must be in [0, 1) (try 0.2)"
                ));
            }
        }
        if self.epochs == 0 {
            return bad("epochs is 0; train for at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("the batch size is 0; it must be at least 1 (try 32)".into());
        }
        Ok(())
    }
}

/// A fully connected layer, stored as ONNX `Gemm` with `transB = 1` wants it:
/// `y = weights · x + bias`, `weights` is `outputs × inputs` row-major (one row per output unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub inputs: usize,
    pub outputs: usize,
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Dense {
    fn zeros(inputs: usize, outputs: usize) -> Dense {
        Dense {
            inputs,
            outputs,
            weights: vec![0.0; inputs * outputs],
            bias: vec![0.0; outputs],
        }
    }

    /// Weights uniform in ±`limit`, biases 0.
    fn uniform(inputs: usize, outputs: usize, limit: f32, rng: &mut SplitMix64) -> Dense {
        Dense {
            weights: (0..inputs * outputs)
                .map(|_| rng.symmetric(limit))
                .collect(),
            ..Dense::zeros(inputs, outputs)
        }
    }
}

/// A trained head: raw features in, logits out.
///
/// As ONNX: `Gemm(hidden)`, `Relu`, `Gemm(output)` when `hidden` is present, else
/// `Gemm(output)` alone. Standardisation, if used, is already folded into the first layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// `units × dim`, followed by a ReLU.
    pub hidden: Option<Dense>,
    /// `classes × dim` for a linear head, `classes × units` after a hidden layer.
    pub output: Dense,
}

impl Head {
    pub fn dim(&self) -> usize {
        self.hidden.as_ref().unwrap_or(&self.output).inputs
    }

    pub fn classes(&self) -> usize {
        self.output.outputs
    }

    /// The logits for one feature vector.
    ///
    /// # Panics
    /// If `features.len()` is not [`Head::dim`].
    pub fn forward(&self, features: &[f32]) -> Vec<f32> {
        assert_eq!(
            features.len(),
            self.dim(),
            "the head takes {} features",
            self.dim()
        );
        let mut logits = Vec::with_capacity(self.classes());
        match &self.hidden {
            None => net::affine(&self.output, features, 1, &mut logits),
            Some(hidden) => {
                let mut activations = Vec::with_capacity(hidden.outputs);
                net::affine(hidden, features, 1, &mut activations);
                activations.iter_mut().for_each(|a| *a = a.max(0.0));
                net::affine(&self.output, &activations, 1, &mut logits);
            }
        }
        logits
    }

    /// The softmax of [`Head::forward`].
    pub fn probabilities(&self, features: &[f32]) -> Vec<f32> {
        let logits = self.forward(features);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|&z| (z - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    }

    fn zeros_like(&self) -> Head {
        let zeros = |d: &Dense| Dense::zeros(d.inputs, d.outputs);
        Head {
            hidden: self.hidden.as_ref().map(zeros),
            output: zeros(&self.output),
        }
    }

    /// He-uniform for the ReLU layer, Glorot-uniform for the softmax layer, biases 0.
    fn initial(kind: HeadKind, dim: usize, classes: usize, rng: &mut SplitMix64) -> Head {
        let glorot = |inputs: usize| (6.0 / (inputs + classes) as f32).sqrt();
        match kind {
            HeadKind::Linear => Head {
                hidden: None,
                output: Dense::zeros(dim, classes),
            },
            HeadKind::Hidden { units, .. } => {
                let hidden = Dense::uniform(dim, units, (6.0 / dim as f32).sqrt(), rng);
                Head {
                    hidden: Some(hidden),
                    output: Dense::uniform(units, classes, glorot(units), rng),
                }
            }
        }
    }

    fn first_layer_mut(&mut self) -> &mut Dense {
        self.hidden.as_mut().unwrap_or(&mut self.output)
    }
}

/// One epoch, as the progress callback and the final report see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochReport {
    /// Counted from 1.
    pub epoch: usize,
    /// The mean weighted cross-entropy over the epoch's batches, as they were trained (with
    /// dropout, weights changing from batch to batch).
    pub train_loss: f64,
    /// The weighted cross-entropy on the validation set at the end of the epoch.
    pub validation_loss: f64,
    /// The fraction of validation examples whose most probable class is their label.
    pub validation_accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    pub epochs: Vec<EpochReport>,
    /// The epoch (counted from 1) with the lowest validation loss: the returned head's.
    pub best_epoch: usize,
    /// Whether patience ran out before the configured number of epochs.
    pub stopped_early: bool,
    /// The weight each class had in the loss (all 1 without class weighting).
    pub class_weights: Vec<f32>,
}

impl TrainReport {
    /// The report of the best epoch.
    pub fn best(&self) -> &EpochReport {
        &self.epochs[self.best_epoch - 1]
    }
}

#[derive(Debug, Clone)]
pub struct Trained {
    pub head: Head,
    pub report: TrainReport,
}

/// A head's quality on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The mean cross-entropy, each example weighted by its class's weight.
    pub loss: f64,
    pub accuracy: f64,
    /// Per class, the fraction of its examples predicted as it (`None` if it has none).
    pub recall: Vec<Option<f64>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training setting: {0}")]
    Setting(String),

    #[error(
        "the features do not fit the labels: {values} values is not {rows} examples × {dim} \
         features (were all images run through the same backbone?)"
    )]
    Shape {
        values: usize,
        rows: usize,
        dim: usize,
    },

    #[error(
        "example {row} has label {label}, but there are only {classes} classes (labels count \
         from 0)"
    )]
    LabelOutOfRange {
        row: usize,
        label: usize,
        classes: usize,
    },

    #[error(
        "example {row} has a NaN or infinite feature (number {column}): extract that image's \
         features again"
    )]
    NotFinite { row: usize, column: usize },

    #[error("the {set} set is empty: it needs at least one example (one per class is better)")]
    EmptySet { set: &'static str },

    #[error(
        "the training and validation sets differ: {what} (split them from the same images and \
         labels)"
    )]
    Mismatch { what: String },

    #[error(
        "class {class} has {count} example(s): cross-validation holds out some of every class \
         and trains on the rest, so each class needs at least 2 (add photos of it, or give \
         train/ and validation/ folders)"
    )]
    TooFewToCrossValidate { class: usize, count: usize },

    #[error("class {class} has no training examples: add images of it, or drop the class")]
    EmptyClass { class: usize },

    #[error(
        "the head expects {expected} features and {classes} classes, the data has {dim} \
         features and {data_classes} classes"
    )]
    WrongHead {
        expected: usize,
        classes: usize,
        dim: usize,
        data_classes: usize,
    },

    #[error(
        "training diverged at epoch {epoch} (the loss became {loss}): lower the learning rate \
         (it is {lr})"
    )]
    Diverged { epoch: usize, loss: f64, lr: f32 },
}

/// The weight of each class in the loss, from the training set's class counts.
pub fn class_weights(choice: ClassWeights, counts: &[usize]) -> Vec<f32> {
    let (min, max) = (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
    );
    let balanced = match choice {
        ClassWeights::None => false,
        ClassWeights::Balanced => true,
        ClassWeights::Auto => max as f64 > 1.1 * min as f64,
    };
    if !balanced {
        return vec![1.0; counts.len()];
    }
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&c| (n as f64 / (counts.len() * c.max(1)) as f64) as f32)
        .collect()
}

/// Trains a head; see [`train_with_progress`].
pub fn train(
    train: &Dataset,
    validation: &Dataset,
    config: &TrainConfig,
) -> Result<Trained, TrainError> {
    train_with_progress(train, validation, config, |_| {})
}

/// Trains a head on `train`, choosing the epoch by loss on `validation`, and calls `progress`
/// after each epoch (before deciding whether to stop).
///
/// Refuses bad settings, sets of different shapes, an empty set or a class without training
/// examples, and reports divergence (a loss that is no longer finite) instead of returning a
/// broken head.
pub fn train_with_progress(
    train: &Dataset,
    validation: &Dataset,
    config: &TrainConfig,
    mut progress: impl FnMut(&EpochReport),
) -> Result<Trained, TrainError> {
    config.check()?;
    check_sets(train, validation)?;
    let mut fitting = Fitting::new(train, config)?;
    let validation_x = fitting.standardizer.apply(validation);

    let mut epochs = Vec::new();
    let mut best = fitting.head.clone();
    let mut best_epoch = 0;
    let mut best_loss = f64::INFINITY;
    let mut stopped_early = false;
    for epoch in 1..=config.epochs {
        let train_loss = fitting.epoch();
        let (validation_loss, correct) = fitting.evaluate(&validation_x, &validation.labels);
        fitting.check_finite(epoch, train_loss, validation_loss)?;
        let report = EpochReport {
            epoch,
            train_loss,
            validation_loss,
            validation_accuracy: correct as f64 / validation.len() as f64,
        };
        log::debug!(
            "epoch {epoch}: train loss {train_loss:.4}, validation loss {validation_loss:.4}, \
             accuracy {:.3}",
            report.validation_accuracy
        );
        progress(&report);
        epochs.push(report);
        if validation_loss < best_loss {
            best_loss = validation_loss;
            best_epoch = epoch;
            best.clone_from(&fitting.head);
        } else if config
            .patience
            .is_some_and(|patience| epoch - best_epoch >= patience)
            && epoch < config.epochs
        {
            stopped_early = true;
            break;
        }
    }

    log::debug!(
        "best epoch {best_epoch} of {} (validation loss {best_loss:.4})",
        epochs.len()
    );
    Ok(Trained {
        head: fitting.fold(best),
        report: TrainReport {
            epochs,
            best_epoch,
            stopped_early,
            class_weights: fitting.weights,
        },
    })
}

/// Trains a head on every example of `data` for exactly `config.epochs` epochs, with no
/// validation set and so no early stopping ([`TrainConfig::patience`] is not used): the refit
/// once cross-validation has chosen the settings and the epoch count. Calls `progress` with the
/// epoch (counted from 1) and its mean training loss.
pub fn fit(
    data: &Dataset,
    config: &TrainConfig,
    mut progress: impl FnMut(usize, f64),
) -> Result<Head, TrainError> {
    config.check()?;
    let mut fitting = Fitting::new(data, config)?;
    for epoch in 1..=config.epochs {
        let train_loss = fitting.epoch();
        fitting.check_finite(epoch, train_loss, 0.0)?;
        progress(epoch, train_loss);
    }
    let head = fitting.head.clone();
    Ok(fitting.fold(head))
}

/// A head being fitted to a training set one epoch at a time, with everything a step needs:
/// what [`train_with_progress`], [`fit`] and the cross-validation share.
struct Fitting<'a> {
    data: &'a Dataset,
    config: &'a TrainConfig,
    /// Each class's weight in the loss.
    weights: Vec<f32>,
    standardizer: Standardizer,
    /// The training rows, standardised (or as they are).
    x: Vec<f32>,
    /// The head so far, on standardised features (see [`Fitting::fold`]).
    head: Head,
    grads: Head,
    optimizer: OptimizerState,
    ws: Workspace,
    shuffle_rng: SplitMix64,
    dropout_rng: SplitMix64,
    batch_x: Vec<f32>,
    batch_labels: Vec<usize>,
    order: Vec<usize>,
}

impl<'a> Fitting<'a> {
    /// The initial head for `data` (whose every class needs an example); `config` is checked
    /// by the caller.
    fn new(data: &'a Dataset, config: &'a TrainConfig) -> Result<Fitting<'a>, TrainError> {
        if data.is_empty() {
            return Err(TrainError::EmptySet { set: "training" });
        }
        if let Some(class) = data.class_counts().iter().position(|&c| c == 0) {
            return Err(TrainError::EmptyClass { class });
        }
        let standardizer = if config.standardize {
            Standardizer::fit(data)
        } else {
            Standardizer::identity(data.dim())
        };
        let mut init_rng = SplitMix64::stream(config.seed, 1);
        let mut head = Head::initial(config.head, data.dim(), data.classes(), &mut init_rng);
        let optimizer = OptimizerState::new(config.optimizer, config.weight_decay, &mut head);
        let batch_size = config.batch_size.min(data.len());
        Ok(Fitting {
            data,
            config,
            weights: class_weights(config.class_weights, &data.class_counts()),
            x: standardizer.apply(data),
            standardizer,
            grads: head.zeros_like(),
            head,
            optimizer,
            ws: Workspace::default(),
            shuffle_rng: SplitMix64::stream(config.seed, 2),
            dropout_rng: SplitMix64::stream(config.seed, 3),
            batch_x: Vec::with_capacity(batch_size * data.dim()),
            batch_labels: Vec::with_capacity(batch_size),
            order: (0..data.len()).collect(),
        })
    }

    /// One pass over the training rows in a new shuffled order; returns the mean weighted loss
    /// of its batches.
    fn epoch(&mut self) -> f64 {
        let dim = self.data.dim();
        let batch_size = self.config.batch_size.min(self.data.len());
        let dropout_rate = match self.config.head {
            HeadKind::Hidden { dropout, .. } => dropout,
            HeadKind::Linear => 0.0,
        };
        self.shuffle_rng.shuffle(&mut self.order);
        let mut train_loss = 0.0;
        for batch in self.order.chunks(batch_size) {
            self.batch_x.clear();
            self.batch_labels.clear();
            for &i in batch {
                self.batch_x
                    .extend_from_slice(&self.x[i * dim..(i + 1) * dim]);
                self.batch_labels.push(self.data.labels[i]);
            }
            let dropout = (dropout_rate > 0.0).then_some(Dropout {
                rate: dropout_rate,
                rng: &mut self.dropout_rng,
            });
            let loss = net::gradient(
                &self.head,
                &self.batch_x,
                &self.batch_labels,
                &self.weights,
                dropout,
                &mut self.grads,
                &mut self.ws,
            );
            train_loss += loss.weighted;
            self.optimizer.step(&mut self.head, &self.grads);
        }
        train_loss / self.data.len() as f64
    }

    /// The weighted loss and the correct count of the head so far on rows already passed
    /// through [`Fitting::standardizer`].
    fn evaluate(&mut self, x: &[f32], labels: &[usize]) -> (f64, usize) {
        evaluate_rows(&self.head, x, labels, &self.weights, &mut self.ws)
    }

    /// A loss that is no longer finite is divergence, reported with the epoch it happened in.
    fn check_finite(&self, epoch: usize, train_loss: f64, other: f64) -> Result<(), TrainError> {
        if train_loss.is_finite() && other.is_finite() {
            return Ok(());
        }
        Err(TrainError::Diverged {
            epoch,
            loss: if train_loss.is_finite() {
                other
            } else {
                train_loss
            },
            lr: self.config.optimizer.lr(),
        })
    }

    /// `head` (this fitting's, at some epoch) made to take raw features.
    fn fold(&self, mut head: Head) -> Head {
        self.standardizer.fold_into(head.first_layer_mut());
        head
    }
}

/// The loss (weighted by `class_weights`, or unweighted with `None`), accuracy and per-class
/// recall of `head` on `data`.
pub fn evaluate(
    head: &Head,
    data: &Dataset,
    class_weights: Option<&[f32]>,
) -> Result<Evaluation, TrainError> {
    if head.dim() != data.dim() || head.classes() != data.classes() {
        return Err(TrainError::WrongHead {
            expected: head.dim(),
            classes: head.classes(),
            dim: data.dim(),
            data_classes: data.classes(),
        });
    }
    let ones = vec![1.0; data.classes()];
    let weights = match class_weights {
        Some(w) if w.len() == data.classes() => w,
        Some(w) => {
            return Err(TrainError::Setting(format!(
                "{} class weights for {} classes",
                w.len(),
                data.classes()
            )));
        }
        None => &ones,
    };
    if data.is_empty() {
        return Err(TrainError::EmptySet { set: "evaluation" });
    }
    let mut ws = Workspace::default();
    let (loss, correct) = evaluate_rows(head, &data.features, &data.labels, weights, &mut ws);
    let mut hits = vec![0usize; data.classes()];
    for (row, &label) in data.rows().zip(&data.labels) {
        if net::argmax(&head.forward(row)).0 == label {
            hits[label] += 1;
        }
    }
    let recall = hits
        .iter()
        .zip(data.class_counts())
        .map(|(&h, n)| (n > 0).then(|| h as f64 / n as f64))
        .collect();
    Ok(Evaluation {
        loss,
        accuracy: correct as f64 / data.len() as f64,
        recall,
    })
}

/// Mean weighted loss and correct count over all rows, in chunks so the workspace stays small.
fn evaluate_rows(
    head: &Head,
    x: &[f32],
    labels: &[usize],
    weights: &[f32],
    ws: &mut Workspace,
) -> (f64, usize) {
    const CHUNK: usize = 256;
    let dim = head.dim();
    let (mut loss, mut correct) = (0.0, 0);
    for (rows, labels) in x.chunks(CHUNK * dim).zip(labels.chunks(CHUNK)) {
        let batch = net::evaluate(head, rows, labels, weights, ws);
        loss += batch.weighted;
        correct += batch.correct;
    }
    (loss / labels.len() as f64, correct)
}

fn check_sets(train: &Dataset, validation: &Dataset) -> Result<(), TrainError> {
    if train.is_empty() {
        return Err(TrainError::EmptySet { set: "training" });
    }
    if validation.is_empty() {
        return Err(TrainError::EmptySet { set: "validation" });
    }
    if train.dim() != validation.dim() {
        return Err(TrainError::Mismatch {
            what: format!(
                "{} features per training example, {} per validation example",
                train.dim(),
                validation.dim()
            ),
        });
    }
    if train.classes() != validation.classes() {
        return Err(TrainError::Mismatch {
            what: format!(
                "{} training classes, {} validation classes",
                train.classes(),
                validation.classes()
            ),
        });
    }
    if let Some(class) = train.class_counts().iter().position(|&c| c == 0) {
        return Err(TrainError::EmptyClass { class });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_class_weights_balance_only_unbalanced_counts() {
        assert_eq!(class_weights(ClassWeights::Auto, &[50, 52, 48]), [1.0; 3]);
        assert_eq!(class_weights(ClassWeights::None, &[90, 10]), [1.0; 2]);
        let auto = class_weights(ClassWeights::Auto, &[90, 10]);
        assert_eq!(auto, class_weights(ClassWeights::Balanced, &[90, 10]));
        // n / (classes · count): 100 / 180 and 100 / 20.
        assert!((auto[0] - 100.0 / 180.0).abs() < 1e-6 && (auto[1] - 5.0).abs() < 1e-6);
        // Weighted counts: every class carries the same total weight.
        assert!((auto[0] * 90.0 - auto[1] * 10.0).abs() < 1e-4);
    }

    fn toy_data(rows: usize, dim: usize, classes: usize, seed: u64) -> Dataset {
        let mut rng = SplitMix64::new(seed);
        // Features with very different offsets and scales, one of them constant.
        let features = (0..rows * dim)
            .map(|i| match i % dim {
                0 => 7.5,
                j => 100.0 * j as f32 + (j * j) as f32 * rng.symmetric(1.0),
            })
            .collect();
        let labels = (0..rows).map(|r| r % classes).collect();
        Dataset::new(features, labels, dim, classes).unwrap()
    }

    #[test]
    fn folded_standardisation_gives_the_same_logits_on_raw_features() {
        let data = toy_data(20, 6, 3, 1);
        let standardizer = Standardizer::fit(&data);
        let standardized = standardizer.apply(&data);
        for kind in [
            HeadKind::Linear,
            HeadKind::Hidden {
                units: 4,
                dropout: 0.0,
            },
        ] {
            let trained = Head::initial(kind, 6, 3, &mut SplitMix64::new(2));
            let mut folded = trained.clone();
            standardizer.fold_into(folded.first_layer_mut());
            for (raw, std) in data.rows().zip(standardized.chunks_exact(6)) {
                let expected = trained.forward(std);
                let got = folded.forward(raw);
                for (g, e) in got.iter().zip(&expected) {
                    assert!(
                        (g - e).abs() < 1e-3 * (1.0 + e.abs()),
                        "{got:?} vs {expected:?}"
                    );
                }
            }
            // The constant feature gets weight 0: an unseen value there changes nothing.
            let first = folded.hidden.as_ref().unwrap_or(&folded.output);
            assert!(first.weights.chunks_exact(6).all(|row| row[0] == 0.0));
        }
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let data = toy_data(12, 4, 2, 3);
        let cases = [
            (
                TrainConfig {
                    batch_size: 0,
                    ..TrainConfig::default()
                },
                "batch size",
            ),
            (
                TrainConfig {
                    optimizer: Optimizer::Adam { lr: 0.0 },
                    ..TrainConfig::default()
                },
                "learning rate",
            ),
            (
                TrainConfig {
                    head: HeadKind::Hidden {
                        units: 8,
                        dropout: 1.0,
                    },
                    ..TrainConfig::default()
                },
                "dropout",
            ),
            (
                TrainConfig {
                    epochs: 0,
                    ..TrainConfig::default()
                },
                "epochs",
            ),
        ];
        for (config, named) in cases {
            let error = train(&data, &data, &config).unwrap_err().to_string();
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn a_learning_rate_far_too_high_is_reported_as_divergence() {
        let data = toy_data(40, 8, 2, 4);
        let config = TrainConfig {
            optimizer: Optimizer::Sgd {
                lr: 1e38,
                momentum: 0.0,
            },
            weight_decay: 0.0,
            standardize: false,
            ..TrainConfig::default()
        };
        let error = train(&data, &data, &config).unwrap_err();
        assert!(
            matches!(error, TrainError::Diverged { epoch: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("lower the learning rate"));
    }
}
