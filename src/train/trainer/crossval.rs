//! Choosing a head's settings by stratified k-fold cross-validation, for photos that come without
//! a validation split: scikit-learn's `LogisticRegressionCV` recipe.
//!
//! The examples are dealt into k folds, each class spread evenly over them. For each setting of a
//! small [`Grid`] (weight decay, standardisation), k heads are trained side by side, each on all
//! folds but one and scored after every epoch on the fold it did not see. The setting and the
//! epoch with the lowest held-out loss, averaged over the folds, win; the caller then trains one
//! head on every example with them ([`super::fit`]). Every example is held out exactly once, so
//! all of them serve both to choose the settings and, in the end, to train; the accuracy reported
//! is that of heads that never saw the photos they were scored on.
//!
//! Settings run in parallel on scoped threads; each is computed on one thread from the seed
//! alone, so the result is the same for any thread count.

use serde::Serialize;

use super::{Dataset, Fitting, TrainConfig, TrainError, net};
use crate::train::rng::SplitMix64;

/// The most folds: more cost more training and gain little on a few dozen photos a class.
pub const MAX_FOLDS: usize = 5;

/// The settings cross-validation chooses among, every combination of them. The epoch count is
/// chosen as well, up to [`TrainConfig::epochs`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grid {
    pub weight_decay: Vec<f32>,
    pub standardize: Vec<bool>,
}

impl Default for Grid {
    /// Four weight decays from mild to strong (at the default learning rate of 1e-2, 0.3 takes
    /// 0.3% off every weight a step, 10 takes 10%), on raw features. Chosen on draws of 5, 10
    /// and 40 photos a class from the shared clothing set, where standardised features did
    /// worse at every learning rate tried (1e-2 to 1e-4), decays of 0.01 and 0.1 scored alike
    /// (the chosen epoch count regularises them), and 3 and 10 helped the smaller draws.
    fn default() -> Grid {
        Grid {
            weight_decay: vec![0.3, 1.0, 3.0, 10.0],
            standardize: vec![false],
        }
    }
}

impl Grid {
    /// Every combination, weight decay outermost.
    fn settings(&self) -> Vec<(f32, bool)> {
        self.weight_decay
            .iter()
            .flat_map(|&decay| self.standardize.iter().map(move |&s| (decay, s)))
            .collect()
    }
}

/// One setting of the grid, at its best epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingScore {
    pub weight_decay: f32,
    pub standardize: bool,
    /// The epoch (counted from 1) with the lowest mean held-out loss.
    pub epochs: usize,
    /// The held-out loss at that epoch, averaged over the folds.
    pub loss: f64,
    /// The held-out accuracy at that epoch, averaged over the folds.
    pub accuracy: f64,
}

/// What cross-validation measured and chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CrossValidation {
    pub folds: usize,
    /// The winning setting; its `accuracy` is the cross-validated accuracy.
    pub chosen: SettingScore,
    /// Each fold's held-out accuracy at the chosen setting and epoch.
    pub fold_accuracy: Vec<f64>,
    /// Every setting tried, in grid order.
    pub settings: Vec<SettingScore>,
    /// Per example, the largest logit given to it by the head of the fold that held it out, at
    /// the chosen setting and epoch: scores of photos a head did not train on, to set the
    /// "unknown" threshold by.
    #[serde(skip)]
    pub out_of_fold_scores: Vec<f32>,
}

impl CrossValidation {
    /// `base` with the chosen setting and epoch count, and no early stopping: the settings of
    /// the final head, trained on every example.
    pub fn config(&self, base: &TrainConfig) -> TrainConfig {
        TrainConfig {
            weight_decay: self.chosen.weight_decay,
            standardize: self.chosen.standardize,
            epochs: self.chosen.epochs,
            patience: None,
            ..base.clone()
        }
    }
}

/// How many folds examples with these class counts make: [`MAX_FOLDS`], or fewer when the
/// smallest class has fewer examples, so that every fold holds out every class. A class of
/// fewer than 2 examples cannot be held out and still be trained on: an error.
pub fn fold_count(class_counts: &[usize]) -> Result<usize, TrainError> {
    let (class, &smallest) = class_counts
        .iter()
        .enumerate()
        .min_by_key(|&(_, &count)| count)
        .ok_or(TrainError::EmptySet { set: "training" })?;
    if smallest < 2 {
        return Err(TrainError::TooFewToCrossValidate {
            class,
            count: smallest,
        });
    }
    Ok(smallest.min(MAX_FOLDS))
}

/// The fold (0 to `folds` − 1) of each example: each class shuffled by `seed` and dealt round
/// the folds, the deal carrying on from one class to the next, so that each class's examples
/// and all examples are spread over the folds as evenly as they divide.
pub fn stratified_folds(labels: &[usize], classes: usize, folds: usize, seed: u64) -> Vec<usize> {
    assert!(folds > 0, "at least one fold");
    let mut rng = SplitMix64::stream(seed, 4);
    let mut fold_of = vec![0; labels.len()];
    let mut next = 0;
    for class in 0..classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        for i in members {
            fold_of[i] = next % folds;
            next += 1;
        }
    }
    fold_of
}

/// Cross-validates every setting of `grid` on `photos` (one row per photo), with `copies`
/// (each a changed copy of every photo, row for row, as `--augment` makes them) trained on
/// beside the photos they come from and never held out. `base` gives every other setting, the
/// most epochs, and the patience: a setting stops once its mean held-out loss has not fallen
/// for that many epochs. `threads` settings run at once.
pub fn cross_validate(
    photos: &Dataset,
    copies: &[Dataset],
    base: &TrainConfig,
    grid: &Grid,
    threads: usize,
    progress: impl Fn() + Sync,
) -> Result<CrossValidation, TrainError> {
    base.check()?;
    if let Some(copy) = copies.iter().find(|c| {
        c.len() != photos.len() || c.dim() != photos.dim() || c.labels() != photos.labels()
    }) {
        return Err(TrainError::Mismatch {
            what: format!(
                "a set of copies has {} rows of {} features for {} photos of {}",
                copy.len(),
                copy.dim(),
                photos.len(),
                photos.dim()
            ),
        });
    }
    let settings = grid.settings();
    if settings.is_empty() {
        return Err(TrainError::Setting(
            "the cross-validation grid is empty: give it at least one weight decay".into(),
        ));
    }
    let folds = fold_count(&photos.class_counts())?;
    let fold_of = stratified_folds(photos.labels(), photos.classes(), folds, base.seed);
    let splits: Vec<(Dataset, Dataset)> = (0..folds)
        .map(|fold| {
            let held: Vec<usize> = (0..photos.len()).filter(|&i| fold_of[i] == fold).collect();
            let kept: Vec<usize> = (0..photos.len()).filter(|&i| fold_of[i] != fold).collect();
            let train = gather(std::iter::once(photos).chain(copies), &kept);
            (train, gather(std::iter::once(photos), &held))
        })
        .collect();

    let threads = threads.clamp(1, settings.len());
    let mut results: Vec<Option<Result<Curve, TrainError>>> = std::iter::repeat_with(|| None)
        .take(settings.len())
        .collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let (settings, splits, progress) = (&settings, &splits, &progress);
                scope.spawn(move || {
                    (worker..settings.len())
                        .step_by(threads)
                        .map(|i| {
                            let (weight_decay, standardize) = settings[i];
                            let config = TrainConfig {
                                weight_decay,
                                standardize,
                                ..base.clone()
                            };
                            let curve = follow(splits, &config);
                            progress();
                            (i, curve)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            for (i, curve) in worker.join().expect("a cross-validation thread panicked") {
                results[i] = Some(curve);
            }
        }
    });
    let curves = results
        .into_iter()
        .map(|r| r.expect("every setting ran"))
        .collect::<Result<Vec<Curve>, TrainError>>()?;

    let scores: Vec<SettingScore> = settings
        .iter()
        .zip(&curves)
        .map(|(&(weight_decay, standardize), curve)| SettingScore {
            weight_decay,
            standardize,
            epochs: curve.epoch,
            loss: curve.loss,
            accuracy: mean(&curve.fold_accuracy),
        })
        .collect();
    let best = choose(&scores);
    let mut out_of_fold_scores = vec![f32::NAN; photos.len()];
    let mut held_rows = vec![0; folds];
    for (i, &fold) in fold_of.iter().enumerate() {
        out_of_fold_scores[i] = curves[best].fold_scores[fold][held_rows[fold]];
        held_rows[fold] += 1;
    }
    for s in &scores {
        log::debug!(
            "weight decay {}, standardise {}: epoch {}, held-out loss {:.4}, accuracy {:.3}",
            s.weight_decay,
            s.standardize,
            s.epochs,
            s.loss,
            s.accuracy
        );
    }
    Ok(CrossValidation {
        folds,
        chosen: scores[best].clone(),
        fold_accuracy: curves[best].fold_accuracy.clone(),
        settings: scores,
        out_of_fold_scores,
    })
}

/// The index of the setting with the lowest loss; on a tie (to 1e-9 of it), the first in grid
/// order.
fn choose(scores: &[SettingScore]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if s.loss < scores[best].loss - 1e-9 * scores[best].loss.abs() {
            best = i;
        }
    }
    best
}

/// One setting followed through the epochs, at its best epoch.
#[derive(Clone)]
struct Curve {
    epoch: usize,
    loss: f64,
    fold_accuracy: Vec<f64>,
    /// Per fold, the largest logit of each held-out row, in row order.
    fold_scores: Vec<Vec<f32>>,
}

/// Trains a head per fold with `config`, all epoch by epoch, and keeps the epoch with the
/// lowest mean held-out loss; stops after `config.patience` epochs without a lower one.
fn follow(splits: &[(Dataset, Dataset)], config: &TrainConfig) -> Result<Curve, TrainError> {
    config.check()?;
    let mut fittings = Vec::with_capacity(splits.len());
    for (train, held) in splits {
        let fitting = Fitting::new(train, config)?;
        let x = fitting.standardizer.apply(held);
        fittings.push((fitting, x, held.labels()));
    }
    let folds = splits.len();
    let mut best = Curve {
        epoch: 0,
        loss: f64::INFINITY,
        fold_accuracy: Vec::new(),
        fold_scores: Vec::new(),
    };
    let mut loss = vec![0.0; folds];
    let mut accuracy = vec![0.0; folds];
    let mut scores = vec![Vec::new(); folds];
    for epoch in 1..=config.epochs {
        for (fold, (fitting, x, labels)) in fittings.iter_mut().enumerate() {
            let train_loss = fitting.epoch();
            let batch = net::evaluate(&fitting.head, x, labels, &fitting.weights, &mut fitting.ws);
            let held_loss = batch.weighted / labels.len() as f64;
            fitting.check_finite(epoch, train_loss, held_loss)?;
            loss[fold] = held_loss;
            accuracy[fold] = batch.correct as f64 / labels.len() as f64;
            scores[fold] = fitting
                .ws
                .logits()
                .chunks_exact(fitting.data.classes())
                .map(|row| net::argmax(row).1)
                .collect();
        }
        let mean_loss = mean(&loss);
        if mean_loss < best.loss {
            best = Curve {
                epoch,
                loss: mean_loss,
                fold_accuracy: accuracy.clone(),
                fold_scores: scores.clone(),
            };
        } else if config
            .patience
            .is_some_and(|patience| epoch - best.epoch >= patience)
        {
            break;
        }
    }
    Ok(best)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The rows `rows` of each of `sets` (all of one shape), set after set.
fn gather<'a>(sets: impl Iterator<Item = &'a Dataset>, rows: &[usize]) -> Dataset {
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    let (mut dim, mut classes) = (0, 0);
    for set in sets {
        (dim, classes) = (set.dim(), set.classes());
        for &i in rows {
            features.extend_from_slice(&set.features()[i * dim..(i + 1) * dim]);
            labels.push(set.labels()[i]);
        }
    }
    Dataset {
        features,
        labels,
        dim,
        classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_fixed_by_the_seed_and_hold_every_example_once() {
        // Classes of 12, 7 and 6 examples, interleaved.
        let labels: Vec<usize> = (0..24)
            .map(|i| match i % 4 {
                0 | 2 => 0,
                1 => 1,
                _ => 2,
            })
            .chain([1])
            .collect();
        let counts = [12, 7, 6];
        let folds = fold_count(&counts).unwrap();
        assert_eq!(folds, 5);
        let fold_of = stratified_folds(&labels, 3, folds, 7);
        // One fold number per example: each is held out by exactly one fold.
        assert_eq!(fold_of.len(), labels.len());
        assert!(fold_of.iter().all(|&f| f < folds));
        for (class, &count) in counts.iter().enumerate() {
            let mut sizes = vec![0; folds];
            for (&label, &f) in labels.iter().zip(&fold_of) {
                if label == class {
                    sizes[f] += 1;
                }
            }
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "class {class}: {sizes:?}");
            assert_eq!(sizes.iter().sum::<usize>(), count);
        }
        let mut sizes = vec![0; folds];
        fold_of.iter().for_each(|&f| sizes[f] += 1);
        assert_eq!(sizes, [5, 5, 5, 5, 5], "25 examples, 5 a fold");
        assert_eq!(stratified_folds(&labels, 3, folds, 7), fold_of);
        assert_ne!(stratified_folds(&labels, 3, folds, 8), fold_of);
    }

    #[test]
    fn the_smallest_class_sets_the_fold_count() {
        assert_eq!(fold_count(&[40, 40, 40]).unwrap(), 5);
        assert_eq!(fold_count(&[5, 3, 9]).unwrap(), 3);
        assert_eq!(fold_count(&[2, 30]).unwrap(), 2);
        let error = fold_count(&[6, 1, 4]).unwrap_err();
        assert!(
            matches!(
                error,
                TrainError::TooFewToCrossValidate { class: 1, count: 1 }
            ),
            "{error}"
        );
    }

    /// Two classes, apart along `dim` noisy features: class c is ±`separation` plus noise.
    fn two_blobs(rows: usize, dim: usize, separation: f32, seed: u64) -> Dataset {
        let mut rng = SplitMix64::new(seed);
        let labels: Vec<usize> = (0..rows).map(|r| r % 2).collect();
        let features = labels
            .iter()
            .flat_map(|&l| {
                let sign = if l == 0 { -1.0 } else { 1.0 };
                (0..dim)
                    .map(|_| sign * separation + rng.symmetric(1.0))
                    .collect::<Vec<_>>()
            })
            .collect();
        Dataset::new(features, labels, dim, 2).unwrap()
    }

    fn config() -> TrainConfig {
        TrainConfig {
            epochs: 60,
            patience: Some(10),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn the_chosen_setting_has_the_lowest_mean_held_out_loss() {
        let data = two_blobs(40, 8, 0.3, 1);
        let grid = Grid {
            weight_decay: vec![0.0, 1.0, 10.0],
            standardize: vec![false, true],
        };
        let cv = cross_validate(&data, &[], &config(), &grid, 2, || {}).unwrap();
        assert_eq!(cv.folds, 5);
        assert_eq!(cv.settings.len(), 6);
        let lowest = cv
            .settings
            .iter()
            .map(|s| s.loss)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(cv.chosen.loss, lowest);
        assert!(cv.settings.contains(&cv.chosen));
        assert!((1..=60).contains(&cv.chosen.epochs));
        // The reported accuracy is the mean of the folds' at the chosen setting.
        assert_eq!(cv.fold_accuracy.len(), 5);
        assert!((mean(&cv.fold_accuracy) - cv.chosen.accuracy).abs() < 1e-12);
        assert!(cv.chosen.accuracy > 0.8, "{cv:?}");
        // Every example has an out-of-fold score.
        assert_eq!(cv.out_of_fold_scores.len(), 40);
        assert!(cv.out_of_fold_scores.iter().all(|s| s.is_finite()));
        let refit = cv.config(&config());
        assert_eq!(
            (
                refit.epochs,
                refit.patience,
                refit.weight_decay,
                refit.standardize
            ),
            (
                cv.chosen.epochs,
                None,
                cv.chosen.weight_decay,
                cv.chosen.standardize
            )
        );
    }

    #[test]
    fn the_result_depends_on_the_seed_not_on_the_thread_count() {
        let data = two_blobs(30, 6, 0.2, 2);
        let grid = Grid::default();
        let one = cross_validate(&data, &[], &config(), &grid, 1, || {}).unwrap();
        let three = cross_validate(&data, &[], &config(), &grid, 3, || {}).unwrap();
        assert_eq!(one, three);
        let counted = std::sync::atomic::AtomicUsize::new(0);
        let again = cross_validate(&data, &[], &config(), &grid, 4, || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(again.out_of_fold_scores, one.out_of_fold_scores);
        assert_eq!(
            counted.into_inner(),
            grid.weight_decay.len() * grid.standardize.len(),
            "progress once a setting"
        );
    }

    #[test]
    fn out_of_fold_scores_come_from_heads_that_did_not_see_the_example() {
        // Each example's score is the largest logit of a head trained, with the chosen
        // setting and epoch count, on the other folds only: trained again here, it must agree.
        let data = two_blobs(20, 4, 0.5, 3);
        let grid = Grid {
            weight_decay: vec![0.1],
            standardize: vec![false],
        };
        let base = config();
        let cv = cross_validate(&data, &[], &base, &grid, 1, || {}).unwrap();
        let fold_of = stratified_folds(data.labels(), 2, cv.folds, base.seed);
        for fold in 0..cv.folds {
            let kept: Vec<usize> = (0..data.len()).filter(|&i| fold_of[i] != fold).collect();
            let train = gather(std::iter::once(&data), &kept);
            let head = super::super::fit(
                &train,
                &TrainConfig {
                    weight_decay: 0.1,
                    standardize: false,
                    epochs: cv.chosen.epochs,
                    ..base.clone()
                },
                |_, _| {},
            )
            .unwrap();
            for (i, row) in data.rows().enumerate().filter(|&(i, _)| fold_of[i] == fold) {
                let expected = net::argmax(&head.forward(row)).1;
                let got = cv.out_of_fold_scores[i];
                assert!(
                    (expected - got).abs() <= 1e-5 * (1.0 + expected.abs()),
                    "example {i}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn copies_train_beside_their_photos_and_are_never_held_out() {
        let data = two_blobs(20, 4, 0.5, 4);
        let copy = data.clone();
        let grid = Grid {
            weight_decay: vec![0.1],
            standardize: vec![false],
        };
        let cv = cross_validate(&data, &[copy], &config(), &grid, 1, || {}).unwrap();
        assert_eq!(cv.out_of_fold_scores.len(), 20, "one score a photo");
        let short = two_blobs(10, 4, 0.5, 4);
        assert!(matches!(
            cross_validate(&data, &[short], &config(), &grid, 1, || {}),
            Err(TrainError::Mismatch { .. })
        ));
    }
}
