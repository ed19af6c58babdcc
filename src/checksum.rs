//! SHA-256 checks for model files.
//!
//! Every model file lives in a folder with a `SHA256SUMS` file in the format of `sha256sum`
//! (so `sha256sum -c SHA256SUMS` checks a folder by hand). pinsight reads a model file once,
//! hashes the bytes it read, and parses only bytes that match: a truncated download, a
//! half-copied SD card or an edited file is refused before tract sees it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::decode::read_regular_file;
use crate::{Error, Result};

pub const SUMS_FILE: &str = "SHA256SUMS";

/// The largest model file pinsight reads: 512 MiB (the bundled float backbone is 17 MB).
pub const MAX_MODEL_FILE_BYTES: u64 = 512 << 20;

/// The largest `SHA256SUMS` pinsight reads: 1 MiB (a line is about 80 bytes).
const MAX_SUMS_FILE_BYTES: u64 = 1 << 20;

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads `path` and checks it against the `SHA256SUMS` beside it. Returns the bytes and their
/// SHA-256.
pub fn read_verified(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = read_regular_file(path, MAX_MODEL_FILE_BYTES, "a model file")?;
    let actual = sha256_hex(&bytes);
    let sums = sums_path(path);
    let name = file_name(path);
    let listing = read_regular_file(&sums, MAX_SUMS_FILE_BYTES, "a checksum list")?;
    let listing = String::from_utf8_lossy(&listing);
    let expected = listing
        .lines()
        .filter_map(parse_line)
        .find(|(_, listed)| *listed == name)
        .map(|(sum, _)| sum.to_ascii_lowercase());
    match expected {
        None => Err(Error::NoChecksum {
            path: path.into(),
            sums,
            name,
        }),
        Some(expected) if expected != actual => Err(Error::ChecksumMismatch {
            path: path.into(),
            sums,
            expected,
            actual,
        }),
        Some(_) => Ok((bytes, actual)),
    }
}

fn sums_path(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).join(SUMS_FILE)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One `sha256sum` line: `<hex>  <name>` (text mode) or `<hex> *<name>` (binary mode).
fn parse_line(line: &str) -> Option<(&str, &str)> {
    let (sum, rest) = line.split_once(' ')?;
    let name = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
    (sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit())).then_some((sum, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_sha256sum_modes() {
        let sum = "a".repeat(64);
        assert_eq!(
            parse_line(&format!("{sum}  model.onnx")),
            Some((sum.as_str(), "model.onnx"))
        );
        assert_eq!(
            parse_line(&format!("{sum} *model.onnx")),
            Some((sum.as_str(), "model.onnx"))
        );
        assert_eq!(parse_line("not a checksum line"), None);
        assert_eq!(parse_line(&format!("{}  short.onnx", "a".repeat(63))), None);
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
