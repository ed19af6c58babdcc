//! Teaching pinsight new classes, and measuring how well it learnt them: `pinsight train` and
//! `pinsight eval`. Nothing here runs in the per-frame loop; [`crate::run`] only loads the head
//! folder this module writes.
//!
//! A training run flows one way, one file a step:
//!
//! | file | its job |
//! |---|---|
//! | `pipeline.rs` | strings the steps together: [`train_from_folder`] and [`evaluate_folder`] |
//! | `photos.rs` | scans a folder of labelled photos: split folders, or a flat folder of classes |
//! | `augment.rs` | the changed copies of a training photo (flipped, zoomed, brighter, darker) |
//! | `cache.rs` | backbone features of each photo and copy, cached on disk by content |
//! | `trainer.rs` | fits a [`Head`] to feature vectors (with `trainer/`: the arithmetic, the optimisers, standardisation, and the cross-validation that chooses a flat folder's settings) |
//! | `rng.rs` | the seeded generator behind the split, the initial weights, shuffling and dropout |
//! | `report.rs` | the evaluation report: text, JSON and a confusion-matrix picture |
//! | `unknown.rs` | the head's "unknown" threshold, and how well it separates other classes |
//! | `progress.rs` | a progress bar on a terminal, log lines elsewhere |
//!
//! The trainer is apart from the rest on purpose: it sees only rows of numbers (no images, no
//! files, no tract), so it can be tested on synthetic features and a seed fixes its result.
//! Only `cache.rs` (to run the backbone) and `pipeline.rs` (to write the head and load it back)
//! reach into [`crate::model`]. `photos.rs` is not called `dataset.rs` because [`Dataset`] is the trainer's
//! name for feature rows and their labels.

mod augment;
mod cache;
mod photos;
mod pipeline;
mod progress;
mod report;
mod rng;
mod trainer;
mod unknown;

pub use cache::default_cache_dir;
pub use photos::{Split, check_new_class_name};
pub use pipeline::{
    Assessment, EvalOptions, Evaluated, TrainOptions, TrainOutcome, evaluate_folder,
    train_from_folder,
};
pub use report::{ClassScores, EvalReport};
pub use trainer::{
    ClassWeights, CrossValidation, Dataset, Dense, EpochReport, Evaluation, Grid, Head, HeadKind,
    MAX_FOLDS, Optimizer, SettingScore, TrainConfig, TrainError, TrainReport, Trained,
    cross_validate, evaluate, fit, fold_count, stratified_folds, train, train_with_progress,
};
pub use unknown::UnknownReport;
