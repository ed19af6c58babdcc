//! Teaching pinsight new classes, and measuring how well it learnt them: `pinsight train` and
//! `pinsight eval`. Nothing here runs in the per-frame loop; [`crate::run`] only loads the head
//! folder this module writes.
//!
//! A training run flows one way, one file a step:
//!
//! | file | its job |
//! |---|---|
//! | `pipeline.rs` | strings the steps together: [`train_from_folder`] and [`evaluate_folder`] |
//! | `photos.rs` | scans a folder of labelled photos and splits it into train/validation/test |
//! | `cache.rs` | backbone features of each photo and its changed copies, cached on disk by content |
//! | `trainer.rs` | fits a [`Head`] to feature vectors (with `trainer/`: the arithmetic, the optimisers, standardisation) |
//! | `rng.rs` | the seeded generator behind the split, the initial weights, shuffling and dropout |
//! | `report.rs` | the evaluation report: text, JSON and a confusion-matrix picture |
//!
//! The trainer is apart from the rest on purpose: it sees only rows of numbers (no images, no
//! files, no tract), so it can be tested on synthetic features and a seed fixes its result.
//! Only `pipeline.rs` reaches into [`crate::model`] (to run the backbone, write the head and
//! load it back). `photos.rs` is not called `dataset.rs` because [`Dataset`] is the trainer's
//! name for feature rows and their labels.

mod cache;
mod photos;
mod pipeline;
mod report;
mod rng;
mod trainer;

pub use cache::default_cache_dir;
pub use pipeline::{TrainOptions, TrainOutcome, evaluate_folder, train_from_folder};
pub use report::{ClassScores, EvalReport};
pub use trainer::{
    ClassWeights, Dataset, Dense, EpochReport, Evaluation, Head, HeadKind, Optimizer, TrainConfig,
    TrainError, TrainReport, Trained, evaluate, train, train_with_progress,
};
