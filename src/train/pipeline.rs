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
    self, Dataset, Evaluation, Head, HeadKind, TrainConfig, TrainError, TrainReport,
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
    /// Threads the int8 engine splits its layers over.
    pub threads: usize,
    /// The feature cache's folder ([`super::default_cache_dir`] unless the user names one).
    pub cache: PathBuf,
    pub config: TrainConfig,
    /// Add flipped, zoomed, brighter and darker copies of each training photo.
    pub augment: bool,
    /// The share of held-out photos of the head's classes that its unknown threshold accepts
    /// (0.5 to 1).
    pub accept_known: f32,
}

/// What a training run did, for the person who ran it (its `Display` is what `pinsight train`
/// prints).
pub struct TrainOutcome {
    /// The head folder written.
    pub out: PathBuf,
    pub classes: Vec<String>,
    /// Photos used per split (train, validation, test), after skipping unreadable ones.
    pub photos: [usize; 3],
    pub skipped: Vec<PathBuf>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub extract_seconds: f64,
    pub train_seconds: f64,
    pub report: TrainReport,
    pub validation: Evaluation,
    pub test: Option<Evaluation>,
    /// The head's unknown threshold, set on the validation and test photos.
    pub unknown: Option<UnknownThreshold>,
    /// The largest difference between the logits tract computes with the written head and the
    /// trainer's own forward pass, over a few validation photos.
    pub check_max_abs_diff: f32,
}

impl fmt::Display for TrainOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [train, validation, test] = self.photos;
        writeln!(f, "classes: {}", self.classes.join(", "))?;
        writeln!(
            f,
            "photos: {train} train, {validation} validation, {test} test ({} skipped)",
            self.skipped.len()
        )?;
        writeln!(
            f,
            "features: {:.1} s ({} from the cache, {} computed); training: {:.1} s, best epoch {} of {}{}",
            self.extract_seconds,
            self.cache_hits,
            self.cache_misses,
            self.train_seconds,
            self.report.best_epoch,
            self.report.epochs.len(),
            if self.report.stopped_early {
                " (stopped early)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "validation accuracy: {:.2}%",
            100.0 * self.validation.accuracy
        )?;
        if let Some(test) = &self.test {
            writeln!(f, "test accuracy: {:.2}%", 100.0 * test.accuracy)?;
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

/// Trains a head on the photos in `options.data` and writes it to `options.out`, then checks
/// that the written head, loaded as `run` loads it, gives the trainer's logits.
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
    for (name, set, variants) in [
        ("train", &photos.train, train_variants),
        ("validation", &photos.validation, &[Variant::Plain][..]),
        ("test", &photos.test, &[Variant::Plain][..]),
    ] {
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
    let [Some(train_set), Some(validation_set), test_set] =
        <[Option<Dataset>; 3]>::try_from(datasets).expect("3")
    else {
        return Err(Error::Dataset {
            dir: options.data.clone(),
            reason: "no readable photos left in the train or validation split".into(),
        });
    };

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
    let unknown = unknown::calibrate(&held_out_scores, options.accept_known);

    let meta = HeadMeta {
        name: options.out.file_name().map_or("head".into(), |n| n.to_string_lossy().into_owned()),
        classes,
        backbone_sha256: vec![backbone.sha256().to_string()],
        unknown,
        extra: json!({
            "kind": match options.config.head { HeadKind::Linear => "linear", HeadKind::Hidden { .. } => "hidden" },
            "created": jiff::Timestamp::now().to_string(),
            "pinsight": env!("CARGO_PKG_VERSION"),
            "photos": { "train": photos_used[0], "validation": photos_used[1], "test": photos_used[2] },
            "augmented": options.augment,
            "best_epoch": trained.report.best_epoch,
            "validation_accuracy": validation.accuracy,
            "test_accuracy": test.as_ref().map(|t| t.accuracy),
            "config": options.config,
        })
        .as_object()
        .expect("an object")
        .clone(),
    };
    let staged = stage_head_dir(
        &out,
        &head_onnx(&layers(&trained.head)),
        &photos.classes,
        &meta,
    )?;
    let check_max_abs_diff = check_written_head(
        backbone.clone(),
        staged.path(),
        &trained.head,
        &validation_set,
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
        train_seconds,
        report: trained.report,
        validation,
        test,
        unknown,
        check_max_abs_diff,
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
/// the trainer's forward pass, on the features of a few validation photos.
fn check_written_head(
    backbone: Arc<Backbone>,
    head_dir: &Path,
    head: &Head,
    validation: &Dataset,
) -> Result<f32> {
    let classifier = Classifier::with_backbone(backbone, head_dir)?;
    let (mut worst, mut largest) = (0f32, 0f32);
    for features in validation.rows().take(5) {
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
