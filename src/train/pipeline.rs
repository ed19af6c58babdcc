//! The steps of `pinsight train` and `pinsight eval` strung together: scan a folder of labelled
//! photos, extract their backbone features (through the cache), train a head on them, write it
//! as a head folder and check that it loads as `run` loads it; or evaluate a head on photos.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::augment::Variant;
use super::cache::Extractor;
use super::photos::{Photo, PhotoSet, Split};
use super::progress::Progress;
use super::report::EvalReport;
use super::trainer::{
    self, CrossValidation, Dataset, Evaluation, Grid, Head, HeadKind, TrainConfig, TrainError,
    TrainReport,
};
use super::unknown::{self, UnknownReport};
use crate::decode::load_rgb;
use crate::model::head::{
    DenseLayer, HeadMeta, UnknownThreshold, check_destination, head_onnx, stage_head_dir,
};
use crate::model::known_score;
use crate::model::{Backbone, Classifier, Engine};
use crate::{Error, Result};

/// What `pinsight train` was asked to do.
pub struct TrainOptions {
    /// The photos: a folder per class, or `train/`, `validation/` (and `test/`) folders of them.
    pub data: PathBuf,
    /// The head folder to write (replaced as a whole).
    pub out: PathBuf,
    /// The backbone file whose features the head learns from.
    pub backbone: PathBuf,
    /// What runs the backbone.
    pub engine: Engine,
    /// Threads the int8 engine splits its layers over, and cross-validation its settings.
    pub threads: usize,
    /// The feature cache's folder ([`super::default_cache_dir`] unless the user names one).
    pub cache: PathBuf,
    /// The settings of a head trained on split folders; for a flat folder, every setting but
    /// those `grid` chooses and the epoch count (`epochs` is then the most cross-validation
    /// tries, `patience` how long it waits for a lower held-out loss).
    pub config: TrainConfig,
    /// The settings cross-validation chooses among, for a flat folder.
    pub grid: Grid,
    /// Add flipped, zoomed, brighter and darker copies of each training photo.
    pub augment: bool,
    /// The share of held-out photos of the head's classes that its unknown threshold accepts
    /// (0.5 to 1).
    pub accept_known: f32,
}

/// How a head's settings were chosen and its accuracy measured, which depends on the photo
/// folder's layout.
pub enum Assessment {
    /// `train/` and `validation/` folders: trained on `train/`, keeping the epoch with the
    /// lowest validation loss; measured on `validation/` and `test/`.
    HeldOut {
        report: TrainReport,
        validation: Evaluation,
        test: Option<Evaluation>,
    },
    /// A flat folder: the settings and the epoch count chosen by k-fold cross-validation, then
    /// trained on every photo for that many epochs. No photo is left over to measure the final
    /// head on: the accuracy is the cross-validated one.
    CrossValidated(CrossValidation),
}

impl Assessment {
    /// The accuracy of a head on photos it did not learn from: validation or cross-validated.
    pub fn accuracy(&self) -> f64 {
        match self {
            Assessment::HeldOut { validation, .. } => validation.accuracy,
            Assessment::CrossValidated(cv) => cv.chosen.accuracy,
        }
    }
}

/// What a training run did, for the person who ran it (its `Display` is what `pinsight train`
/// prints).
pub struct TrainOutcome {
    /// The head folder written.
    pub out: PathBuf,
    pub classes: Vec<String>,
    /// Photos used per split (train, validation, test), after skipping unreadable ones; a flat
    /// folder's are all training photos.
    pub photos: [usize; 3],
    pub skipped: Vec<PathBuf>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub extract_seconds: f64,
    /// Cross-validation (for a flat folder) and training.
    pub train_seconds: f64,
    pub assessment: Assessment,
    /// The head's unknown threshold, set on the validation and test photos, or for a flat
    /// folder on each photo's score from the cross-validation head that did not train on it.
    pub unknown: Option<UnknownThreshold>,
    /// The largest difference between the logits tract computes with the written head and the
    /// trainer's own forward pass, over a few photos.
    pub check_max_abs_diff: f32,
}

impl fmt::Display for TrainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [train, validation, test] = self.photos;
        let skipped = self.skipped.len();
        writeln!(f, "classes: {}", self.classes.join(", "))?;
        let features = format!(
            "features: {:.1} s ({} from the cache, {} computed)",
            self.extract_seconds, self.cache_hits, self.cache_misses
        );
        match &self.assessment {
            Assessment::HeldOut {
                report,
                validation: checked,
                test: tested,
            } => {
                writeln!(
                    f,
                    "photos: {train} train, {validation} validation, {test} test ({skipped} skipped)"
                )?;
                writeln!(
                    f,
                    "{features}; training: {:.1} s, best epoch {} of {}{}",
                    self.train_seconds,
                    report.best_epoch,
                    report.epochs.len(),
                    if report.stopped_early {
                        " (stopped early)"
                    } else {
                        ""
                    }
                )?;
                writeln!(f, "validation accuracy: {:.2}%", 100.0 * checked.accuracy)?;
                if let Some(tested) = tested {
                    writeln!(f, "test accuracy: {:.2}%", 100.0 * tested.accuracy)?;
                }
            }
            Assessment::CrossValidated(cv) => {
                writeln!(
                    f,
                    "photos: {train}, all for training (no split folders: {}-fold \
                     cross-validation) ({skipped} skipped)",
                    cv.folds
                )?;
                let chosen = &cv.chosen;
                writeln!(
                    f,
                    "{features}; training: {:.1} s ({} settings cross-validated; then {} epochs \
                     on every photo, weight decay {}, {})",
                    self.train_seconds,
                    cv.settings.len(),
                    chosen.epochs,
                    chosen.weight_decay,
                    if chosen.standardize {
                        "standardised"
                    } else {
                        "raw features"
                    }
                )?;
                let (low, high) = cv
                    .fold_accuracy
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &a| {
                        (l.min(a), h.max(a))
                    });
                writeln!(
                    f,
                    "cross-validated accuracy: {:.2}% (folds {:.1}% to {:.1}%)",
                    100.0 * chosen.accuracy,
                    100.0 * low,
                    100.0 * high
                )?;
            }
        }
        if let Some(unknown) = &self.unknown {
            writeln!(
                f,
                "unknown below a score of {:.3} (accepts {:.1}% of {} held-out photos)",
                unknown.threshold,
                100.0 * unknown.accepted,
                unknown.photos
            )?;
        }
        writeln!(
            f,
            "wrote {} (tract vs trainer: max abs difference {:.2e})",
            self.out.display(),
            self.check_max_abs_diff
        )
    }
}

/// A head fitted to a folder's features, with what was measured on the way.
struct Fitted {
    head: Head,
    assessment: Assessment,
    /// Scores of photos the head (or, in cross-validation, the fold's head) did not learn from.
    held_out_scores: Vec<f32>,
    /// The features to compare tract's logits with the trainer's on.
    check_rows: Dataset,
    train_seconds: f64,
}

/// Trains a head on the photos in `options.data` and writes it to `options.out`, then checks
/// that the written head, loaded as `run` loads it, gives the trainer's logits.
///
/// With `train/` and `validation/` folders the head learns from `train/` and stops early on
/// `validation/`; a flat folder's photos all train the head, with the settings and epoch
/// count chosen by cross-validation on them.
///
/// Before any work, `options.out` is checked (`check_out`: absent, an empty folder, or a head
/// folder pinsight wrote; apart from the photos and the cache) and the photo folder's layout
/// and class names (`PhotoSet::scan`); the new head is loaded and checked in a staging
/// folder, and replaces the previous one only when that check passes.
pub fn train_from_folder(options: &TrainOptions) -> Result<TrainOutcome> {
    let out = check_out(options)?;
    let photos = PhotoSet::scan(&options.data)?;
    photos.check_trainable().map_err(|reason| Error::Dataset {
        dir: options.data.clone(),
        reason,
    })?;
    crate::model::threads::set(options.threads).map_err(Error::Usage)?;
    let backbone = Arc::new(Backbone::load_with(&options.backbone, options.engine)?);
    let mut extractor = Extractor::new(&backbone, &options.cache)?;
    let started = Instant::now();
    let train_variants: &[Variant] = if options.augment {
        &Variant::AUGMENTED
    } else {
        &[Variant::Plain]
    };
    let mut skipped = Vec::new();
    let classes = photos.classes.len();
    let dim = backbone.feature_len();
    let mut sets = Vec::new();
    let all = if photos.flat {
        photos.in_split(Split::All)
    } else {
        Vec::new()
    };
    let parts: [(&str, &[Photo], &[Variant]); 3] = if photos.flat {
        [
            ("photos", &all, train_variants),
            ("validation", &[], &[]),
            ("test", &[], &[]),
        ]
    } else {
        [
            ("train", &photos.train, train_variants),
            ("validation", &photos.validation, &[Variant::Plain]),
            ("test", &photos.test, &[Variant::Plain]),
        ]
    };
    for (name, set, variants) in parts {
        let (features, labels, used) = extract(&mut extractor, name, set, variants, &mut skipped)?;
        sets.push((features, labels, used));
    }
    let extract_seconds = started.elapsed().as_secs_f64();
    log::info!(
        "features: {} from the cache, {} computed",
        extractor.hits,
        extractor.misses
    );
    let photos_used = [sets[0].2, sets[1].2, sets[2].2];
    let mut datasets = Vec::new();
    for (features, labels, _) in sets {
        datasets.push(if labels.is_empty() {
            None
        } else {
            Some(Dataset::new(features, labels, dim, classes).map_err(training_error)?)
        });
    }
    let [train_set, validation_set, test_set] =
        <[Option<Dataset>; 3]>::try_from(datasets).expect("3");
    let fitted = match (photos.flat, train_set, validation_set) {
        (true, Some(all), _) => {
            cross_validate_and_fit(options, &photos.classes, all, train_variants.len())?
        }
        (false, Some(train_set), Some(validation_set)) => {
            fit_with_validation(options, train_set, validation_set, test_set)?
        }
        _ => {
            return Err(Error::Dataset {
                dir: options.data.clone(),
                reason: "no readable photos left in the train or validation split".into(),
            });
        }
    };
    let unknown = unknown::calibrate(&fitted.held_out_scores, options.accept_known);

    let kind = match options.config.head {
        HeadKind::Linear => "linear",
        HeadKind::Hidden { .. } => "hidden",
    };
    let mut extra = json!({
        "kind": kind,
        "created": jiff::Timestamp::now().to_string(),
        "pinsight": env!("CARGO_PKG_VERSION"),
        "photos": { "train": photos_used[0], "validation": photos_used[1], "test": photos_used[2] },
        "augmented": options.augment,
    });
    match &fitted.assessment {
        Assessment::HeldOut {
            report,
            validation,
            test,
        } => {
            extra["best_epoch"] = json!(report.best_epoch);
            extra["validation_accuracy"] = json!(validation.accuracy);
            extra["test_accuracy"] = json!(test.as_ref().map(|t| t.accuracy));
            extra["config"] = json!(options.config);
        }
        Assessment::CrossValidated(cv) => {
            extra["cross_validation"] = json!({
                "folds": cv.folds,
                "accuracy": cv.chosen.accuracy,
                "fold_accuracy": cv.fold_accuracy,
                "loss": cv.chosen.loss,
                "chosen": cv.chosen,
                "settings": cv.settings,
            });
            extra["config"] = json!(cv.config(&options.config));
        }
    }
    let meta = HeadMeta {
        name: options
            .out
            .file_name()
            .map_or("head".into(), |n| n.to_string_lossy().into_owned()),
        classes,
        backbone_sha256: vec![backbone.sha256().to_string()],
        unknown,
        extra: extra.as_object().expect("an object").clone(),
    };
    let staged = stage_head_dir(
        &out,
        &head_onnx(&layers(&fitted.head)),
        &photos.classes,
        &meta,
    )?;
    let check_max_abs_diff = check_written_head(
        backbone.clone(),
        staged.path(),
        &fitted.head,
        &fitted.check_rows,
    )
    .map_err(|e| {
        Error::Training(format!(
            "the new head failed its check, so the previous one was kept: {e}"
        ))
    })?;
    staged.commit()?;
    Ok(TrainOutcome {
        out: options.out.clone(),
        classes: photos.classes,
        photos: photos_used,
        skipped,
        cache_hits: extractor.hits,
        cache_misses: extractor.misses,
        extract_seconds,
        train_seconds: fitted.train_seconds,
        assessment: fitted.assessment,
        unknown,
        check_max_abs_diff,
    })
}

/// Trains on `train`, keeping the epoch with the lowest loss on `validation`, and measures
/// the head on `validation` and `test`.
fn fit_with_validation(
    options: &TrainOptions,
    train_set: Dataset,
    validation_set: Dataset,
    test_set: Option<Dataset>,
) -> Result<Fitted> {
    let started = Instant::now();
    let progress = Progress::new("training", options.config.epochs as u64);
    let trained =
        trainer::train_with_progress(&train_set, &validation_set, &options.config, |epoch| {
            progress.message(format!(
                "epoch {}: validation accuracy {:.1}%",
                epoch.epoch,
                100.0 * epoch.validation_accuracy
            ));
            progress.inc();
        })
        .map_err(training_error)?;
    progress.finish();
    let train_seconds = started.elapsed().as_secs_f64();
    let evaluate =
        |set: &Dataset| trainer::evaluate(&trained.head, set, None).map_err(training_error);
    let validation = evaluate(&validation_set)?;
    let test = test_set.as_ref().map(evaluate).transpose()?;
    let held_out_scores: Vec<f32> = std::iter::once(&validation_set)
        .chain(&test_set)
        .flat_map(Dataset::rows)
        .map(|row| known_score(&trained.head.forward(row)))
        .collect();
    Ok(Fitted {
        head: trained.head,
        assessment: Assessment::HeldOut {
            report: trained.report,
            validation,
            test,
        },
        held_out_scores,
        check_rows: validation_set,
        train_seconds,
    })
}

/// Chooses the settings and epoch count by cross-validation on every photo of a flat folder,
/// then trains the head on all of them. `all` holds `variants` rows a photo, its plain row
/// first, photo after photo.
fn cross_validate_and_fit(
    options: &TrainOptions,
    classes: &[String],
    all: Dataset,
    variants: usize,
) -> Result<Fitted> {
    let started = Instant::now();
    // One set a variant, row i of each from photo i: the plain photos are held out, their
    // changed copies only ever trained on.
    let (dim, count) = (all.dim(), all.classes());
    let by_variant = (0..variants)
        .map(|v| {
            let rows: Vec<usize> = (v..all.len()).step_by(variants).collect();
            let features = rows
                .iter()
                .flat_map(|&r| &all.features()[r * dim..(r + 1) * dim])
                .copied()
                .collect();
            let labels = rows.iter().map(|&r| all.labels()[r]).collect();
            Dataset::new(features, labels, dim, count).map_err(training_error)
        })
        .collect::<Result<Vec<Dataset>>>()?;
    let (plain, copies) = by_variant.split_first().expect("the plain photos");
    let settings = options.grid.weight_decay.len() * options.grid.standardize.len();
    let progress = Progress::new("cross-validating", settings as u64);
    let cv = trainer::cross_validate(
        plain,
        copies,
        &options.config,
        &options.grid,
        options.threads,
        || progress.inc(),
    )
    .map_err(|e| match e {
        TrainError::TooFewToCrossValidate { class, count } => Error::Dataset {
            dir: options.data.clone(),
            reason: format!(
                "{} has {count} readable photo(s): cross-validation needs at least 2 of every \
                 class",
                classes[class]
            ),
        },
        e => training_error(e),
    })?;
    progress.finish();
    let chosen = &cv.chosen;
    log::info!(
        "{}-fold cross-validation: weight decay {}, {}, {} epochs: accuracy {:.3}, loss {:.4}",
        cv.folds,
        chosen.weight_decay,
        if chosen.standardize {
            "standardised"
        } else {
            "raw features"
        },
        chosen.epochs,
        chosen.accuracy,
        chosen.loss
    );
    let config = cv.config(&options.config);
    let progress = Progress::new("training", config.epochs as u64);
    let head = trainer::fit(&all, &config, |_, _| progress.inc()).map_err(training_error)?;
    progress.finish();
    let train_seconds = started.elapsed().as_secs_f64();
    Ok(Fitted {
        head,
        held_out_scores: cv.out_of_fold_scores.clone(),
        assessment: Assessment::CrossValidated(cv),
        check_rows: plain.clone(),
        train_seconds,
    })
}

/// Checks `--out` before any work and returns it as an absolute path with its folders'
/// symbolic links resolved. It must be absent, an empty folder or a head folder pinsight wrote
/// ([`check_destination`]), and neither inside nor around the photos or the feature cache (a
/// head written there would take their place).
fn check_out(options: &TrainOptions) -> Result<PathBuf> {
    let refuse = |reason: String| Error::OutRefused {
        path: options.out.clone(),
        reason,
    };
    let out = resolve(&options.out).map_err(|e| refuse(e.to_string()))?;
    for (what, path) in [("photos", &options.data), ("feature cache", &options.cache)] {
        let Ok(other) = resolve(path) else { continue };
        let relation = if out == other {
            "is"
        } else if out.starts_with(&other) {
            "is inside"
        } else if other.starts_with(&out) {
            "holds"
        } else {
            continue;
        };
        return Err(refuse(format!(
            "it {relation} the {what} folder {}: write the head to a folder of its own",
            path.display()
        )));
    }
    check_destination(&out).map_err(|e| match e {
        Error::OutRefused { reason, .. } => refuse(reason),
        e => e,
    })?;
    Ok(out)
}

/// `path` made absolute, with the symbolic links in its existing part resolved; the missing
/// part is kept as written (and must not hold `.` or `..`).
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => {
                return Ok(missing.iter().rev().fold(real, |p, name| p.join(name)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(name), Some(parent)) = (existing.file_name(), existing.parent()) else {
                    return Err(std::io::Error::other(
                        "name the folder itself (a path without `..`)",
                    ));
                };
                missing.push(name);
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    }
}

fn training_error(error: TrainError) -> Error {
    Error::Training(error.to_string())
}

/// Features of every photo of `set` (each variant one row), skipping unreadable photos with a
/// warning that names them. Returns the rows, their labels and the photos used.
fn extract(
    extractor: &mut Extractor,
    name: &str,
    set: &[Photo],
    variants: &[Variant],
    skipped: &mut Vec<PathBuf>,
) -> Result<(Vec<f32>, Vec<usize>, usize)> {
    let progress = Progress::new(&format!("features ({name})"), set.len() as u64);
    let (mut features, mut labels, mut used) = (Vec::new(), Vec::new(), 0);
    for photo in set {
        match extractor.features(&photo.path, variants) {
            Ok(rows) => {
                for row in rows {
                    features.extend(row);
                    labels.push(photo.class);
                }
                used += 1;
            }
            Err(e @ (Error::Image { .. } | Error::Read { .. })) => {
                progress.suspend(|| log::warn!("skipping {e}"));
                skipped.push(photo.path.clone());
            }
            Err(e) => return Err(e),
        }
        progress.inc();
    }
    progress.finish();
    Ok((features, labels, used))
}

fn layers(head: &Head) -> Vec<DenseLayer<'_>> {
    head.hidden
        .iter()
        .chain([&head.output])
        .map(|d| DenseLayer {
            weights: &d.weights,
            bias: &d.bias,
            inputs: d.inputs,
            outputs: d.outputs,
        })
        .collect()
}

/// How far tract's logits may be from the trainer's, relative to the largest logit (plus 1).
const HEAD_CHECK_TOLERANCE: f32 = 1e-3;

/// Puts the written head on the loaded backbone with the checks `run` makes (checksums, the
/// backbone it was made for, shapes, labels) and compares the logits tract computes with it to
/// the trainer's forward pass, on the features of a few photos (validation photos, when there
/// are).
fn check_written_head(
    backbone: Arc<Backbone>,
    head_dir: &Path,
    head: &Head,
    photos: &Dataset,
) -> Result<f32> {
    let classifier = Classifier::with_backbone(backbone, head_dir)?;
    let (mut worst, mut largest) = (0f32, 0f32);
    for features in photos.rows().take(5) {
        let expected = head.forward(features);
        let got = classifier.head_logits(features)?;
        if got.len() != expected.len() {
            return Err(Error::BadHead {
                dir: head_dir.into(),
                reason: format!("{} logits, the trainer has {}", got.len(), expected.len()),
            });
        }
        for (a, b) in expected.iter().zip(&got) {
            // NaN compares false with everything: count it as the worst difference.
            let diff = (a - b).abs();
            worst = if diff.is_nan() {
                f32::INFINITY
            } else {
                worst.max(diff)
            };
            largest = largest.max(a.abs());
        }
    }
    log::info!(
        "the written head in tract vs the trainer's forward pass: max abs difference {worst:e}"
    );
    // tract and the trainer sum the same f32 products in another order: they agree to about
    // 1e-6 of the logits' size; a difference of 1e-3 means the written head is not the
    // trained one.
    if !worst.is_finite() || worst > HEAD_CHECK_TOLERANCE * (1.0 + largest) {
        return Err(Error::BadHead {
            dir: head_dir.into(),
            reason: format!(
                "tract's logits differ from the trainer's by {worst:e} (logits up to {largest:e})"
            ),
        });
    }
    Ok(worst)
}

/// What `pinsight eval` was asked to do.
pub struct EvalOptions {
    /// The photos, laid out as for training and split the same way (`Split::All` takes every
    /// photo); unlike training, any number of classes and photos a class will do.
    pub data: PathBuf,
    pub split: Split,
    pub backbone: PathBuf,
    pub head: PathBuf,
    /// What runs the backbone.
    pub engine: Engine,
    /// Threads the int8 engine splits its layers over.
    pub threads: usize,
    /// Where the JSON report goes.
    pub json: PathBuf,
    /// Where the confusion matrix picture goes.
    pub png: PathBuf,
    /// Photos of classes the head does not know, a folder per class: the report then says how
    /// well the head tells them from its own (`unknown` in the JSON).
    pub unknown: Option<PathBuf>,
}

/// An evaluation, written (its `Display` is what `pinsight eval` prints).
pub struct Evaluated {
    pub report: EvalReport,
    /// Photos that could not be read (named in the log).
    pub skipped: Vec<PathBuf>,
    pub json: PathBuf,
    pub png: PathBuf,
}

impl fmt::Display for Evaluated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.report.text())?;
        writeln!(
            f,
            "\nwrote {} and {}",
            self.json.display(),
            self.png.display()
        )?;
        if !self.skipped.is_empty() {
            writeln!(
                f,
                "{} photos could not be read (named in the log)",
                self.skipped.len()
            )?;
        }
        Ok(())
    }
}

/// Evaluates a head (with its backbone, as `run` does) on a split of a photo folder and writes
/// the report as JSON and as a confusion picture.
pub fn evaluate_folder(options: &EvalOptions) -> Result<Evaluated> {
    let (data, head_dir) = (&options.data, &options.head);
    crate::train::report::check_report_paths(&options.json, &options.png)?;
    let photos = PhotoSet::scan(data)?;
    if photos.flat && options.split != Split::All {
        log::warn!(
            "{} has no split folders: its {} split is pinsight's own, and a head `pinsight \
             train` made from this folder learnt from every one of its photos; to measure such \
             a head, evaluate photos kept apart from it (`--split all`), or read the \
             cross-validated accuracy `train` printed",
            data.display(),
            options.split
        );
    }
    let chosen = photos.in_split(options.split);
    if chosen.is_empty() {
        return Err(Error::Dataset {
            dir: data.into(),
            reason: format!(
                "no photos in its {} split{}: `--split all` evaluates every photo",
                options.split,
                if photos.classes.is_empty() {
                    " (no class folders)"
                } else {
                    " (a class of 1 or 2 photos is all training photos when pinsight splits it)"
                }
            ),
        });
    }
    crate::model::threads::set(options.threads).map_err(Error::Usage)?;
    let classifier = Classifier::load_with(&options.backbone, head_dir, options.engine)?;
    let head_index = |class: &str| classifier.labels().iter().position(|l| l == class);
    let unknown: Vec<&String> = photos
        .classes
        .iter()
        .filter(|c| head_index(c).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Dataset {
            dir: data.into(),
            reason: format!(
                "the head in {} does not know the classes {:?} (it knows {:?})",
                head_dir.display(),
                unknown,
                classifier.labels()
            ),
        });
    }
    let others = match &options.unknown {
        None => Vec::new(),
        Some(dir) => unknown_photos(dir, &classifier)?,
    };
    let mut pairs = Vec::new();
    let mut known = Vec::new();
    let mut other_scores = Vec::new();
    let mut skipped = Vec::new();
    let progress = Progress::new("evaluating", (chosen.len() + others.len()) as u64);
    let mut classify = |path: &Path| match load_rgb(path) {
        Ok(image) => {
            progress.inc();
            classifier.classify(&image).map(Some)
        }
        Err(e) => {
            progress.suspend(|| log::warn!("skipping {e}"));
            progress.inc();
            skipped.push(path.to_path_buf());
            Ok(None)
        }
    };
    for photo in &chosen {
        if let Some(result) = classify(&photo.path)? {
            let predicted =
                crate::scores::top_k(&result.probabilities, classifier.labels(), 1)[0].index;
            let truth = head_index(&photos.classes[photo.class]).expect("checked above");
            pairs.push((truth, predicted));
            known.push((result.known_score, truth == predicted));
        }
    }
    for path in &others {
        if let Some(result) = classify(path)? {
            other_scores.push(result.known_score);
        }
    }
    progress.finish();
    let mut report = EvalReport::from_pairs(classifier.labels(), &pairs);
    if options.unknown.is_some() {
        report.unknown = Some(UnknownReport::new(
            &known,
            &other_scores,
            classifier.unknown_threshold(),
        ));
    }
    report.write(&options.json, &options.png)?;
    Ok(Evaluated {
        report,
        skipped,
        json: options.json.clone(),
        png: options.png.clone(),
    })
}

/// Every photo under `dir` (a folder per class, as for training), refused when a class is one
/// the head knows: its photos would count as unknown ones.
fn unknown_photos(dir: &Path, classifier: &Classifier) -> Result<Vec<PathBuf>> {
    let photos = PhotoSet::scan(dir)?;
    let known: Vec<&String> = photos
        .classes
        .iter()
        .filter(|c| classifier.labels().contains(c))
        .collect();
    if !known.is_empty() {
        return Err(Error::Dataset {
            dir: dir.into(),
            reason: format!(
                "--unknown takes photos of classes the head does not know, and it knows {known:?}"
            ),
        });
    }
    let all = photos.in_split(Split::All);
    if all.is_empty() {
        return Err(Error::Dataset {
            dir: dir.into(),
            reason: "no photos in its class folders".into(),
        });
    }
    Ok(all.into_iter().map(|photo| photo.path).collect())
}
