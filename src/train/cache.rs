//! Backbone features of photos, cached on disk so that training a head again on the same photos
//! does not run the backbone again.
//!
//! The cache holds one small file per photo and variant ([`Variant`]: the photo or a changed
//! copy, named by [`Variant::key`]), keyed by the SHA-256 of the photo's bytes (not its name: a renamed photo is still a hit, an edited one is not) under a folder
//! named by the backbone's SHA-256 (another backbone never reads these features). Files are
//! written to a temporary name and renamed, so an interrupted run leaves no partial entry.

use std::path::{Path, PathBuf};

use super::augment::Variant;
use crate::checksum::sha256_hex;
use crate::decode::decode;
use crate::model::Backbone;
use crate::{Error, Result};

/// The default cache folder: `$XDG_CACHE_HOME/pinsight/features`, else
/// `~/.cache/pinsight/features`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("pinsight").join("features")
}

/// Extracts features through the backbone, reading and filling the cache.
pub struct Extractor<'a> {
    backbone: &'a Backbone,
    dir: PathBuf,
    pub hits: u64,
    pub misses: u64,
}

impl<'a> Extractor<'a> {
    pub fn new(backbone: &'a Backbone, cache_root: &Path) -> Result<Extractor<'a>> {
        let dir = cache_root.join(&backbone.sha256()[..16]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::Write {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        Ok(Extractor {
            backbone,
            dir,
            hits: 0,
            misses: 0,
        })
    }

    /// The features of each variant of the photo at `path`, in the order given.
    pub fn features(&mut self, path: &Path, variants: &[Variant]) -> Result<Vec<Vec<f32>>> {
        let bytes = crate::decode::read_image_file(path)?;
        let sha256 = sha256_hex(&bytes);
        let mut decoded = None;
        let mut out = Vec::with_capacity(variants.len());
        for &variant in variants {
            let entry = self.dir.join(format!("{sha256}.{}.f32", variant.key()));
            if let Some(features) = self.read_entry(&entry) {
                self.hits += 1;
                out.push(features);
                continue;
            }
            self.misses += 1;
            if decoded.is_none() {
                decoded = Some(decode(&bytes).map_err(|reason| Error::Image {
                    path: path.into(),
                    reason,
                })?);
            }
            let image = variant.apply(decoded.clone().expect("decoded above"));
            let features = self.backbone.features_of(&image)?;
            write_entry(&entry, &features)?;
            out.push(features);
        }
        Ok(out)
    }

    fn read_entry(&self, entry: &Path) -> Option<Vec<f32>> {
        let bytes = std::fs::read(entry).ok()?;
        if bytes.len() != self.backbone.feature_len() * 4 {
            log::warn!("ignoring damaged cache entry {}", entry.display());
            return None;
        }
        Some(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

fn write_entry(entry: &Path, features: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = features.iter().flat_map(|f| f.to_le_bytes()).collect();
    crate::durable::write(entry, &bytes)
}
