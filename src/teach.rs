//! The learner `pinsight run` hands its enrollment ([`crate::run::enroll`]): pinsight's own
//! training on the photos of the enroll classes, written to the enroll head folder. It lives
//! outside `run/` so that the loop imports no training.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::board::EnrollSpec;
use crate::model::Engine;
use crate::run::ModelFiles;
use crate::run::enroll::{Learn, Learned};
use crate::train::{Grid, TrainConfig, TrainOptions, train_from_folder};

/// Trains a head on every photo of the enroll classes with the defaults of `pinsight train`.
#[derive(Debug, Clone)]
pub struct Teacher {
    photos: PathBuf,
    head: PathBuf,
    classes: Vec<String>,
    min_photos: usize,
    backbone: PathBuf,
    engine: Engine,
    threads: usize,
    cache: PathBuf,
}

impl Teacher {
    /// A teacher for `spec`'s classes, on the run's backbone, caching features in `cache`.
    pub fn new(spec: &EnrollSpec, model: &ModelFiles, cache: PathBuf) -> Teacher {
        Teacher {
            photos: spec.photos.clone(),
            head: spec.head.clone(),
            classes: spec.buttons.iter().map(|b| b.class.clone()).collect(),
            min_photos: spec.min_photos,
            backbone: model.backbone.clone(),
            engine: model.engine,
            threads: model.threads,
            cache,
        }
    }

    /// Photos of each enroll class in the photos folder.
    fn count(&self) -> BTreeMap<String, usize> {
        self.classes
            .iter()
            .map(|class| {
                let photos = std::fs::read_dir(self.photos.join(class)).map_or(0, |entries| {
                    entries
                        .filter_map(|entry| entry.ok())
                        .filter(|entry| crate::decode::is_image_file_name(&entry.path()))
                        .count()
                });
                (class.clone(), photos)
            })
            .collect()
    }
}

impl Learn for Teacher {
    fn learn(&self) -> Result<Learned, String> {
        let started = Instant::now();
        let photos = self.count();
        let too_few: Vec<String> = photos
            .iter()
            .filter(|(_, n)| **n < self.min_photos)
            .map(|(class, _)| class.clone())
            .collect();
        if !too_few.is_empty() {
            return Ok(Learned {
                photos,
                too_few,
                train_ms: 0.0,
            });
        }
        // The enroll classes alone, whatever else the photos folder holds: a folder of links
        // to their folders.
        let view = tempfile::Builder::new()
            .prefix("pinsight-enroll-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary folder: {e}"))?;
        for class in &self.classes {
            let folder = std::path::absolute(self.photos.join(class))
                .map_err(|e| format!("{}: {e}", self.photos.join(class).display()))?;
            std::os::unix::fs::symlink(&folder, view.path().join(class))
                .map_err(|e| format!("cannot link {}: {e}", folder.display()))?;
        }
        let options = TrainOptions {
            data: view.path().to_path_buf(),
            out: self.head.clone(),
            backbone: self.backbone.clone(),
            engine: self.engine,
            threads: self.threads,
            cache: self.cache.clone(),
            config: TrainConfig::default(),
            grid: Grid::default(),
            augment: false,
            accept_known: 0.95,
        };
        let outcome = train_from_folder(&options).map_err(|e| e.to_string())?;
        log::info!(
            "enroll: {}",
            outcome.to_string().trim_end().replace('\n', "; ")
        );
        Ok(Learned {
            photos,
            too_few: Vec::new(),
            train_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}
