//! Backbone features of photos, cached on disk so that training a head again on the same photos
//! does not run the backbone again.
//!
//! The cache holds one small file per photo and variant ([`Variant`]: the photo or a changed
//! copy, named by [`Variant::key`]), keyed by the SHA-256 of the photo's bytes (not its name: a
//! renamed photo is still a hit, an edited one is not) under a folder named by the backbone's
//! SHA-256 and the engine that ran it (another backbone, or the other engine, whose features
//! differ in their last digits, never reads these features). Files are
//! written through [`crate::durable`] (a temporary name, synced, renamed), so an interrupted
//! run leaves no partial entry; and each entry carries its own checksum, so one torn or changed
//! anyway (a disk that lied about a sync, a bit flip, a hand edit) is recomputed, not trusted:
//!
//! ```text
//! b"PSF1"  feature count (u32 LE)  SHA-256 of the features (32 bytes)  features (f32 LE each)
//! ```
//! Entries in the earlier format (bare features, no header) are misses, rewritten in this one.

use std::path::{Path, PathBuf};

use sha2::Digest;

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
        let dir = cache_root.join(format!(
            "{}-{}",
            &backbone.sha256()[..16],
            backbone.engine()
        ));
        crate::durable::create_dir_all(&dir).map_err(|e| Error::Write {
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
        let expected = HEADER + 4 * self.backbone.feature_len();
        // Look at the size first: a damaged entry of any size is never read whole.
        let len = std::fs::metadata(entry).ok()?.len();
        let bytes = (len == expected as u64)
            .then(|| std::fs::read(entry).ok())
            .flatten();
        match bytes
            .as_deref()
            .and_then(|b| parse_entry(b, self.backbone.feature_len()))
        {
            Some(features) => Some(features),
            None => {
                log::warn!(
                    "recomputing the damaged or outdated cache entry {}",
                    entry.display()
                );
                None
            }
        }
    }
}

const MAGIC: &[u8; 4] = b"PSF1";
/// Magic, feature count, SHA-256.
const HEADER: usize = 4 + 4 + 32;

/// The features of an entry, if it is whole: the header's magic, count and checksum match.
fn parse_entry(bytes: &[u8], feature_len: usize) -> Option<Vec<f32>> {
    let (header, payload) = bytes.split_at_checked(HEADER)?;
    let count = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
    if &header[..4] != MAGIC || count != feature_len || payload.len() != 4 * count {
        return None;
    }
    if header[8..] != sha2::Sha256::digest(payload)[..] {
        return None;
    }
    Some(
        payload
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn entry_bytes(features: &[f32]) -> Vec<u8> {
    let payload: Vec<u8> = features.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(features.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&sha2::Sha256::digest(&payload));
    bytes.extend_from_slice(&payload);
    bytes
}

fn write_entry(entry: &Path, features: &[f32]) -> Result<()> {
    crate::durable::write(entry, &entry_bytes(features))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_and_any_damage_is_a_miss() {
        let features = [0.5f32, -1.25, 3.0, 0.0];
        let bytes = entry_bytes(&features);
        assert_eq!(parse_entry(&bytes, 4).as_deref(), Some(&features[..]));
        assert_eq!(parse_entry(&bytes, 5), None, "another feature count");
        assert_eq!(parse_entry(&bytes[..bytes.len() - 1], 4), None, "truncated");
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert_eq!(parse_entry(&flipped, 4), None, "byte {i} flipped");
        }
        let old_format: Vec<u8> = features.iter().flat_map(|f| f.to_le_bytes()).collect();
        assert_eq!(
            parse_entry(&old_format, 4),
            None,
            "the format without a header"
        );
    }
}
