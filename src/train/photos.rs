//! A folder of labelled photos: one sub-folder per class, optionally already split.
//!
//! ```text
//! DATA_DIR/<class>/*.jpg                      "flat": no split folders
//! DATA_DIR/{train,validation,test}/<class>/*  split by the user (test/ is optional)
//! ```
//! `pinsight train` learns from every photo of a flat folder (choosing its settings by
//! cross-validation); `pinsight eval` splits one here, stratified with a fixed seed, so that a
//! folder kept apart for evaluation can be taken in parts.
//! The photos are only ever read: nothing in `DATA_DIR` is moved, renamed or written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::rng::SplitMix64;
use crate::decode::is_image_file_name;
use crate::{Error, Result};

const SPLITS: [&str; 3] = ["train", "validation", "test"];
/// The seed of the split pinsight makes of a folder that is not split already: fixed, so that
/// `pinsight eval` holds out the photos `pinsight train` held out.
const SPLIT_SEED: u64 = 20261129;

/// A photo and the index of its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    pub path: PathBuf,
    pub class: usize,
}

/// Which photos of a folder to take: one split, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The test photos, or the validation photos when the folder has no test split.
    Test,
    Validation,
    Train,
    /// Train, validation and test together.
    All,
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Test => "test",
            Split::Validation => "validation",
            Split::Train => "train",
            Split::All => "whole",
        })
    }
}

#[derive(Debug, Clone)]
pub struct PhotoSet {
    /// Class names, sorted: the index of a name is its class index.
    pub classes: Vec<String>,
    pub train: Vec<Photo>,
    pub validation: Vec<Photo>,
    pub test: Vec<Photo>,
    /// The folder has no split folders (`train/` is absent): the split above is pinsight's.
    pub flat: bool,
}

impl PhotoSet {
    /// Reads the folder layout. Without split folders, each class is split 70/15/15 into
    /// train/validation/test by a shuffle with a fixed seed (at least one validation photo for
    /// a class of 3 or more; a class of 1 or 2 photos is all training photos), for `eval`;
    /// training takes them all ([`PhotoSet::flat`]). Class folder names must make good labels
    /// ([`check_class_name`]); a folder with none is refused.
    pub fn scan(dir: &Path) -> Result<PhotoSet> {
        let bad = |reason: String| Error::Dataset {
            dir: dir.into(),
            reason,
        };
        if !dir.is_dir() {
            return Err(bad("it is not a folder".into()));
        }
        let presplit = dir.join("train").is_dir();
        let (classes, [train, validation, test]) = if presplit {
            let classes = class_names(&dir.join("train"))?;
            let mut sets = Vec::new();
            for split in SPLITS {
                let split_dir = dir.join(split);
                if !split_dir.is_dir() {
                    sets.push(Vec::new());
                    continue;
                }
                let extra: Vec<String> = class_names(&split_dir)?
                    .into_iter()
                    .filter(|c| !classes.contains(c))
                    .collect();
                if !extra.is_empty() {
                    return Err(bad(format!(
                        "{split}/ has classes that train/ lacks: {}",
                        extra.join(", ")
                    )));
                }
                sets.push(photos(&split_dir, &classes)?);
            }
            (
                classes,
                <[Vec<Photo>; 3]>::try_from(sets).expect("three splits"),
            )
        } else {
            let classes = class_names(dir)?;
            let all = photos(dir, &classes)?;
            let sets = stratified_split(all, classes.len(), SPLIT_SEED);
            (classes, sets)
        };
        Ok(PhotoSet {
            classes,
            train,
            validation,
            test,
            flat: !presplit,
        })
    }

    /// Whether a head can be trained on these photos: 2 or more classes, each with 2 or more
    /// training photos, and some validation photos; in a flat folder, where every photo is a
    /// training photo and cross-validation holds some of each class out in turn, 2 or more
    /// photos a class. (An evaluation needs none of this.)
    pub fn check_trainable(&self) -> std::result::Result<(), String> {
        if self.classes.len() < 2 {
            return Err(format!(
                "a classifier needs at least 2 classes (one folder of photos each); found {}",
                self.classes.len()
            ));
        }
        if self.flat {
            let small = self.too_few(&self.counts(&self.in_split(Split::All)));
            if !small.is_empty() {
                return Err(format!(
                    "every class needs at least 2 photos (cross-validation holds out some of \
                     each class in turn and trains on the rest); too few in: {}",
                    small.join(", ")
                ));
            }
            return Ok(());
        }
        let small = self.too_few(&self.counts(&self.train));
        if !small.is_empty() {
            return Err(format!(
                "every class needs at least 2 training photos; too few in: {}",
                small.join(", ")
            ));
        }
        if self.validation.is_empty() {
            return Err(
                "no validation photos: add a validation/ folder, or more photos per class".into(),
            );
        }
        Ok(())
    }

    /// The classes with fewer than 2 photos of `counts`, named with their count.
    fn too_few(&self, counts: &[usize]) -> Vec<String> {
        self.classes
            .iter()
            .zip(counts)
            .filter(|(_, n)| **n < 2)
            .map(|(class, n)| format!("{class} ({n})"))
            .collect()
    }

    /// The photos of `split`.
    pub fn in_split(&self, split: Split) -> Vec<Photo> {
        match split {
            Split::Test if self.test.is_empty() => self.validation.clone(),
            Split::Test => self.test.clone(),
            Split::Validation => self.validation.clone(),
            Split::Train => self.train.clone(),
            Split::All => [
                self.train.clone(),
                self.validation.clone(),
                self.test.clone(),
            ]
            .concat(),
        }
    }

    /// Photos per class in `set`.
    fn counts(&self, set: &[Photo]) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for photo in set {
            counts[photo.class] += 1;
        }
        counts
    }
}

/// The longest class name, in characters: it is a label in `labels.txt`, in the JSON output
/// and in the confusion picture.
pub const MAX_CLASS_NAME: usize = 100;

/// Whether a folder name makes a good class label: UTF-8, 1 to [`MAX_CLASS_NAME`] characters,
/// no control characters (a newline would split `labels.txt`), no spaces at either end (so
/// "hat" and "hat " cannot both be classes), and not only spaces. Returns what is wrong.
pub fn check_class_name(name: &std::ffi::OsStr) -> std::result::Result<&str, String> {
    let shown = format!("{:?}", name.to_string_lossy());
    let name = name
        .to_str()
        .ok_or_else(|| format!("the folder name {shown} is not valid UTF-8"))?;
    let problem = if name.trim().is_empty() {
        Some("is empty or only spaces".to_string())
    } else if name.chars().any(char::is_control) {
        Some("holds a control character (a newline, tab, ...)".into())
    } else if name.trim() != name {
        Some("starts or ends with a space".into())
    } else if name.chars().count() > MAX_CLASS_NAME {
        Some(format!("is longer than {MAX_CLASS_NAME} characters"))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("the class folder name {shown} {problem}")),
        None => Ok(name),
    }
}

/// Whether `name` makes a class folder that `pinsight train` reads as a class: a good class
/// name (as `check_class_name` has it) that is one folder (no `/`), not hidden (no leading
/// `.`) and not a split's name (`train`, `validation`, `test`). Returns what is wrong.
pub fn check_new_class_name(name: &str) -> std::result::Result<(), String> {
    check_class_name(name.as_ref())?;
    let shown = format!("{name:?}");
    if name.contains('/') {
        Err(format!(
            "the class name {shown} holds a `/`: it must be one folder's name"
        ))
    } else if name.starts_with('.') {
        Err(format!(
            "the class name {shown} starts with `.`: training leaves hidden folders out"
        ))
    } else if SPLITS.contains(&name) {
        Err(format!(
            "the class name {shown} is a split's name ({}): training would read the folder \
             as a split",
            SPLITS.join(", ")
        ))
    } else {
        Ok(())
    }
}

/// The class folders under `dir` (hidden folders and split folders left out), sorted, each
/// name checked with [`check_class_name`], and no two the same but for case (they would be
/// one folder on a FAT or exFAT card).
fn class_names(dir: &Path) -> Result<Vec<String>> {
    let bad = |reason: String| Error::Dataset {
        dir: dir.into(),
        reason: format!("{reason}: rename the folder to a plain class name"),
    };
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(Error::read(dir))? {
        let entry = entry.map_err(Error::read(dir))?;
        if !entry.path().is_dir() {
            continue;
        }
        let raw = entry.file_name();
        if raw.as_encoded_bytes().starts_with(b".") || SPLITS.iter().any(|s| raw.as_os_str() == *s)
        {
            continue;
        }
        names.insert(check_class_name(&raw).map_err(bad)?.to_owned());
    }
    let mut folded = std::collections::BTreeMap::new();
    for name in &names {
        if let Some(other) = folded.insert(name.to_lowercase(), name) {
            return Err(bad(format!(
                "the class folders {other:?} and {name:?} differ only in case"
            )));
        }
    }
    Ok(names.into_iter().collect())
}

/// The image files of each class folder under `dir`, in name order; other files are named in a
/// warning and left out.
fn photos(dir: &Path, classes: &[String]) -> Result<Vec<Photo>> {
    let mut photos = Vec::new();
    for (class, name) in classes.iter().enumerate() {
        let class_dir = dir.join(name);
        if !class_dir.is_dir() {
            continue;
        }
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&class_dir)
            .map_err(Error::read(&class_dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_file())
            .collect();
        paths.sort();
        for path in paths {
            if is_image_file_name(&path) {
                photos.push(Photo { path, class });
            } else {
                log::warn!(
                    "skipping {}: not an image file (.jpg, .jpeg, .png, .webp, .bmp)",
                    path.display()
                );
            }
        }
    }
    Ok(photos)
}

fn stratified_split(all: Vec<Photo>, classes: usize, seed: u64) -> [Vec<Photo>; 3] {
    let (mut train, mut validation, mut test) = (Vec::new(), Vec::new(), Vec::new());
    let mut rng = SplitMix64::new(seed);
    for class in 0..classes {
        let mut members: Vec<Photo> = all.iter().filter(|p| p.class == class).cloned().collect();
        // Fisher-Yates with a fixed seed: the same folder always splits the same way.
        for i in (1..members.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            members.swap(i, j);
        }
        let n = members.len();
        let held_out = if n >= 3 {
            ((n as f64 * 0.15).round() as usize).max(1)
        } else {
            0
        };
        let tested = if n >= 4 { held_out } else { 0 };
        test.extend(members.drain(..tested));
        validation.extend(members.drain(..held_out));
        train.extend(members);
    }
    [train, validation, test]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(class: usize, i: usize) -> Photo {
        Photo {
            path: PathBuf::from(format!("{class}/{i}.jpg")),
            class,
        }
    }

    #[test]
    fn split_is_stratified_and_fixed_by_the_seed() {
        let all: Vec<Photo> = (0..2)
            .flat_map(|c| (0..20).map(move |i| photo(c, i)))
            .collect();
        let [train, validation, test] = stratified_split(all.clone(), 2, 7);
        for class in 0..2 {
            let count = |set: &[Photo]| set.iter().filter(|p| p.class == class).count();
            assert_eq!(
                (count(&train), count(&validation), count(&test)),
                (14, 3, 3)
            );
        }
        let again = stratified_split(all.clone(), 2, 7);
        assert_eq!([train, validation.clone(), test], again);
        assert_ne!(
            stratified_split(all, 2, 8)[1],
            validation,
            "another seed, another split"
        );
    }

    #[test]
    fn the_test_split_is_the_validation_split_when_there_is_none() {
        let set = PhotoSet {
            classes: vec!["a".into(), "b".into()],
            train: vec![photo(0, 0), photo(1, 0)],
            validation: vec![photo(0, 1), photo(1, 1)],
            test: Vec::new(),
            flat: false,
        };
        assert_eq!(set.in_split(Split::Test), set.validation);
        assert_eq!(set.in_split(Split::Train), set.train);
        assert_eq!(set.in_split(Split::All).len(), 4);
        let with_test = PhotoSet {
            test: vec![photo(1, 2)],
            ..set
        };
        assert_eq!(with_test.in_split(Split::Test), with_test.test);
    }

    #[test]
    fn small_classes_keep_their_photos_for_training() {
        let all = vec![
            photo(0, 0),
            photo(0, 1),
            photo(1, 0),
            photo(1, 1),
            photo(1, 2),
        ];
        let [train, validation, test] = stratified_split(all, 2, 1);
        assert_eq!((train.len(), validation.len(), test.len()), (4, 1, 0));
    }
}
