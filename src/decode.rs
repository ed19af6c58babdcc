//! Decoding encoded images, files and MJPEG camera frames alike, into 8-bit RGB: JPEG (checked
//! whole, and given the standard Huffman tables that UVC cameras leave out), PNG, WebP, BMP.
//!
//! Everything here is sized for a board with 4 GB of memory, whatever a file claims: pinsight
//! reads only regular files ([`read_regular_file`]: a FIFO, a device or a folder is refused
//! before anything blocks on it) of at most [`MAX_IMAGE_FILE_BYTES`], and decodes images of at
//! most [`MAX_SIDE`] pixels a side whose pixels take at most [`MAX_DECODED_BYTES`]. An image
//! beyond these is refused with its size, before its pixels are allocated; the run loop,
//! `classify`, `train` and `eval` count it and go on with the next one.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::{Error, Result};

/// The file name endings pinsight reads as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "bmp"];

/// Whether `path` ends in one of [`IMAGE_EXTENSIONS`] (in any case).
pub fn is_image_file_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    })
}

/// The longest side, in pixels, of an image pinsight decodes: 16384 (a 200-megapixel phone
/// photo is 16320 pixels wide). The model sees 224 × 224 pixels; a side longer than this is a
/// mistake or an attack, and one of 1 × 16777216 pixels would make the resize's arithmetic
/// overflow.
pub const MAX_SIDE: u32 = 16384;

/// The most memory an image's decoded pixels may take: 256 MiB (an 8-bit RGB photo of
/// 89 megapixels, a 16-bit RGBA one of 33). Decoding holds at most about three times this
/// (the decoder's pixels, their RGB copy, a turned copy for an EXIF orientation), which a board
/// with 4 GB of memory has room for beside the model.
pub const MAX_DECODED_BYTES: u64 = 256 << 20;

/// The largest image file pinsight reads: 128 MiB. No photo it can decode within
/// [`MAX_DECODED_BYTES`] is larger.
pub const MAX_IMAGE_FILE_BYTES: u64 = 128 << 20;

/// Reads an image file through [`read_regular_file`], at most [`MAX_IMAGE_FILE_BYTES`]. Every
/// image file pinsight reads (`classify`, `run` over files, `train`, `eval`, `bench`) goes
/// through here.
pub fn read_image_file(path: &Path) -> Result<Vec<u8>> {
    read_regular_file(path, MAX_IMAGE_FILE_BYTES, "an image file")
}

/// Reads a regular file of at most `limit` bytes (`what` names the kind of file in the error:
/// "an image file"). Anything else is refused without blocking and without reading more than
/// `limit` + 1 bytes: a FIFO (opening one for reading waits for a writer, forever), a device
/// (`/dev/zero` never ends), a folder or a socket is `Error::Read` saying what the path is; a
/// longer file is `Error::Read` with the limit.
pub fn read_regular_file(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let refuse = |kind: io::ErrorKind, message: String| Error::Read {
        path: path.into(),
        cause: io::Error::new(kind, message),
    };
    // O_NONBLOCK: opening a FIFO does not wait for a writer (and a regular file ignores it);
    // the open file is then asked what it is, so that nothing can swap the path in between.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(Error::read(path))?;
    let metadata = file.metadata().map_err(Error::read(path))?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "a folder"
        } else if file_type.is_fifo() {
            "a FIFO (named pipe)"
        } else if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else if file_type.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(refuse(
            io::ErrorKind::InvalidInput,
            format!("it is {kind}, not a regular file"),
        ));
    }
    let too_large = || {
        refuse(
            io::ErrorKind::FileTooLarge,
            format!(
                "it is larger than {} ({limit} bytes), the most pinsight reads from {what}",
                human_bytes(limit)
            ),
        )
    };
    if metadata.len() > limit {
        return Err(too_large());
    }
    // The file may grow after the fstat: read one byte past the limit to notice.
    let mut data = Vec::with_capacity(metadata.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(Error::read(path))?;
    if data.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(data)
}

/// `bytes` in KiB, MiB or GiB when it is a whole number of them.
fn human_bytes(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Reads and decodes an image file (JPEG, PNG, WebP, BMP); see [`read_image_file`] and
/// [`decode`].
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let data = read_image_file(path)?;
    decode(&data).map_err(|reason| Error::Image {
        path: path.into(),
        reason,
    })
}

/// Decodes an encoded image into RGB, turned upright by its EXIF orientation as a phone's photo
/// viewer would show it. A JPEG must be whole: one cut short is refused rather than decoded
/// with grey where its end is missing. An image larger than [`MAX_SIDE`] or
/// [`MAX_DECODED_BYTES`] is refused from its header, before its pixels are allocated.
pub fn decode(data: &[u8]) -> Result<RgbImage, String> {
    let data = if data.starts_with(&[0xFF, 0xD8]) {
        complete_jpeg(data)?
    } else {
        Cow::Borrowed(data)
    };
    let error = |e: image::ImageError| e.to_string();
    let reader = |limits: Limits| -> Result<ImageReader<Cursor<&[u8]>>, String> {
        let mut reader = ImageReader::new(Cursor::new(&*data))
            .with_guessed_format()
            .map_err(|e| e.to_string())?;
        reader.limits(limits);
        Ok(reader)
    };
    // The header first, to refuse an image by its size in words: the decoders' own refusal of
    // a size beyond the limits below does not say the size.
    let (width, height) = reader(Limits::default())?
        .into_dimensions()
        .map_err(|e| match e {
            // A 32-bit build's PNG decoder refuses an image whose pixels would not fit in its
            // address space at the header, before it says the size.
            image::ImageError::Limits(_) => format!(
                "it is too large: pinsight decodes images of at most {MAX_SIDE} pixels a side \
                 and {} of pixels (scale it down first)",
                human_bytes(MAX_DECODED_BYTES)
            ),
            e => e.to_string(),
        })?;
    check_size(width, height, 0)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    let mut decoder = reader(limits)?.into_decoder().map_err(error)?;
    // Not every decoder applies the limits itself: check what this one will allocate.
    let (width, height) = decoder.dimensions();
    check_size(width, height, decoder.total_bytes())?;
    let orientation = decoder.orientation().map_err(error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(error)?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// Refuses an image of `width` × `height` pixels whose decoder needs `decoded_bytes` when it is
/// empty or beyond [`MAX_SIDE`] or [`MAX_DECODED_BYTES`] (its RGB copy counts too).
fn check_size(width: u32, height: u32, decoded_bytes: u64) -> Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("it has no pixels ({width} × {height})"));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(format!(
            "it is {width} × {height} pixels; pinsight decodes images of at most {MAX_SIDE} \
             pixels a side (scale it down first)"
        ));
    }
    let rgb_bytes = 3 * u64::from(width) * u64::from(height);
    if decoded_bytes.max(rgb_bytes) > MAX_DECODED_BYTES {
        return Err(format!(
            "it is {width} × {height} pixels, which would take {} MiB to decode; pinsight \
             decodes at most {} (scale it down first)",
            decoded_bytes.max(rgb_bytes) >> 20,
            human_bytes(MAX_DECODED_BYTES)
        ));
    }
    Ok(())
}

/// Checks that a JPEG is whole and gives it the standard Huffman tables when it has none (as
/// UVC cameras send MJPEG frames). A JPEG cut short (a USB transfer lost mid-frame, a file
/// half-copied) lacks the end-of-image marker after its scan: decoders would fill the missing
/// part with grey, so it is refused instead.
fn complete_jpeg(data: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    const SOI: [u8; 2] = [0xFF, 0xD8];
    const EOI: [u8; 2] = [0xFF, 0xD9];
    if !data.starts_with(&SOI) {
        return Err("no start-of-image marker".into());
    }
    // Walk the header segments up to the start of scan, noting whether a DHT is among them.
    let (mut at, mut has_tables) = (2, false);
    let scan = loop {
        let Some(&[0xFF, marker, high, low]) = data.get(at..at + 4) else {
            return Err("cut short in its header".into());
        };
        match marker {
            0xDA => break at,
            0xC4 => has_tables = true,
            _ => {}
        }
        at += 2 + usize::from(u16::from_be_bytes([high, low]));
    };
    // In entropy-coded data 0xFF is always followed by 0x00 or a restart marker: an FF D9 after
    // the scan header is the end of the image (cameras may pad after it).
    if !data[scan..].windows(2).any(|pair| pair == EOI) {
        return Err("truncated: no end-of-image marker after the scan".into());
    }
    if has_tables {
        return Ok(Cow::Borrowed(data));
    }
    let mut whole = Vec::with_capacity(data.len() + STANDARD_DHT.len());
    whole.extend_from_slice(&data[..scan]);
    whole.extend_from_slice(&STANDARD_DHT);
    whole.extend_from_slice(&data[scan..]);
    Ok(Cow::Owned(whole))
}

/// The Huffman tables of the JPEG standard (ITU-T T.81, Annex K.3: luminance and chrominance,
/// DC and AC) as one DHT segment. UVC cameras leave them out of MJPEG frames and decoders are
/// expected to assume them.
#[rustfmt::skip]
const STANDARD_DHT: [u8; 420] = [
    0xff, 0xc4, 0x01, 0xa2, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00,
    0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51,
    0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52,
    0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26,
    0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47,
    0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87,
    0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5,
    0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
    0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
    0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
    0xf7, 0xf8, 0xf9, 0xfa, 0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
    0x0b, 0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01,
    0x02, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
    0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33,
    0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1, 0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19,
    0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x82, 0x83, 0x84, 0x85,
    0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3,
    0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
    0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
    0xd9, 0xda, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
    0xf7, 0xf8, 0xf9, 0xfa,
];
