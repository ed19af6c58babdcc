//! Frames as a source delivers them, and their conversion to 8-bit RGB.
//!
//! Cameras hand over packed YUV (YUYV), semi-planar YUV (NV12), RGB or BGR, grey, or a JPEG per
//! frame (MJPEG); a folder source hands over encoded image files. [`Converter::to_rgb`] turns any
//! of them into an [`RgbImage`] at the frame's own size, reusing its buffers; the resize to the
//! model's input happens after (see [`crate::preprocess`]).
//!
//! YUV is converted with yuvutils-rs (SIMD on x86 and NEON) as BT.601 limited range, what V4L2
//! specifies for SDTV-sized webcam YUV (`V4L2_COLORSPACE_SMPTE170M`) and what UVC cameras send.

use std::time::Instant;

use crate::decode::decode;
use image::RgbImage;
use yuvutils_rs::{
    YuvBiPlanarImage, YuvConversionMode, YuvPackedImage, YuvRange, YuvStandardMatrix,
};

/// How the bytes of a frame are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2 YUV, `Y0 U Y1 V` for each pair of pixels (V4L2 `YUYV`).
    Yuyv,
    /// A Y plane, then one plane of interleaved `U V` at half resolution (V4L2 `NV12`).
    Nv12,
    /// Packed `R G B` (V4L2 `RGB3`).
    Rgb24,
    /// Packed `B G R` (V4L2 `BGR3`).
    Bgr24,
    /// 8-bit luminance (V4L2 `GREY`).
    Grey,
    /// One JPEG image a frame (V4L2 `MJPG`, `JPEG`); may lack Huffman tables, as many UVC
    /// cameras send it.
    Mjpeg,
    /// An image file (JPEG, PNG, WebP, BMP), from a folder source.
    Encoded,
}

impl serde::Serialize for PixelFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.fourcc())
    }
}

impl PixelFormat {
    /// The V4L2 four-character code, as `v4l2-ctl --list-formats` prints it.
    pub fn fourcc(self) -> &'static str {
        match self {
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Rgb24 => "RGB3",
            PixelFormat::Bgr24 => "BGR3",
            PixelFormat::Grey => "GREY",
            PixelFormat::Mjpeg => "MJPG",
            PixelFormat::Encoded => "file",
        }
    }

    pub fn from_fourcc(code: &[u8; 4]) -> Option<PixelFormat> {
        Some(match code {
            b"YUYV" => PixelFormat::Yuyv,
            b"NV12" => PixelFormat::Nv12,
            b"RGB3" => PixelFormat::Rgb24,
            b"BGR3" => PixelFormat::Bgr24,
            b"GREY" => PixelFormat::Grey,
            b"MJPG" | b"JPEG" => PixelFormat::Mjpeg,
            _ => return None,
        })
    }

    /// Bytes a row holds at least, for the formats whose rows have a fixed size (`None` for the
    /// others, and for a width whose row would not fit in a `usize`). NV12's longest row is
    /// a chroma row: a `U V` pair for every two pixels, one byte more than a luma row when the
    /// width is odd.
    fn min_stride(self, width: u32) -> Option<usize> {
        let width = width as usize;
        match self {
            PixelFormat::Yuyv => width.div_ceil(2).checked_mul(4),
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => width.checked_mul(3),
            PixelFormat::Nv12 => width.div_ceil(2).checked_mul(2),
            PixelFormat::Grey => Some(width),
            PixelFormat::Mjpeg | PixelFormat::Encoded => None,
        }
    }
}

/// One frame from a source, in the source's own format.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Counts the frames the source captured, from 0; a gap means frames were dropped.
    pub sequence: u64,
    pub captured_at: Instant,
    pub format: PixelFormat,
    /// Zero for encoded formats (the size is in the data).
    pub width: u32,
    pub height: u32,
    /// Bytes from the start of one row to the next (V4L2 `bytesperline`); 0 for encoded formats.
    pub stride: usize,
    pub data: Vec<u8>,
    /// Where the frame came from, for messages: a file path, or the camera device.
    pub origin: String,
}

/// Why a frame could not be converted: it is skipped and counted, the stream goes on.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// An image file (a folder source's frame) that does not decode.
    #[error("cannot decode image {origin}: {reason}")]
    Undecodable { origin: String, reason: String },
    #[error("{origin}: corrupt {format} frame: {reason}")]
    Corrupt {
        origin: String,
        format: &'static str,
        reason: String,
    },
    #[error("{origin}: {format} frame of {width}x{height} needs {needed} bytes, got {got}")]
    Short {
        origin: String,
        format: &'static str,
        width: u32,
        height: u32,
        needed: usize,
        got: usize,
    },
}

/// Converts frames to RGB, keeping its output buffer from one frame to the next.
#[derive(Default)]
pub struct Converter {
    rgb: RgbImage,
    /// Rows of a padded YUV frame, packed tight for yuvutils-rs (0.8 checks plane sizes against
    /// the image width and so refuses a stride wider than the row).
    tight: Vec<u8>,
}

impl Converter {
    /// The frame converted last (empty before the first).
    pub fn rgb(&self) -> &RgbImage {
        &self.rgb
    }

    pub fn to_rgb(&mut self, frame: &Frame) -> Result<&RgbImage, ConvertError> {
        let corrupt = |reason: String| ConvertError::Corrupt {
            origin: frame.origin.clone(),
            format: frame.format.fourcc(),
            reason,
        };
        match frame.format {
            PixelFormat::Mjpeg => {
                self.rgb = decode(&frame.data).map_err(corrupt)?;
                return Ok(&self.rgb);
            }
            PixelFormat::Encoded => {
                self.rgb = decode(&frame.data).map_err(|reason| ConvertError::Undecodable {
                    origin: frame.origin.clone(),
                    reason,
                })?;
                return Ok(&self.rgb);
            }
            _ => {}
        }
        let (width, height, stride) = (frame.width, frame.height, frame.stride);
        let needed = raw_len(frame.format, width, height, stride).map_err(corrupt)?;
        if width == 0 || height == 0 || frame.data.len() < needed {
            return Err(ConvertError::Short {
                origin: frame.origin.clone(),
                format: frame.format.fourcc(),
                width,
                height,
                needed,
                got: frame.data.len(),
            });
        }
        if self.rgb.dimensions() != (width, height) {
            self.rgb = RgbImage::new(width, height);
        }
        let out: &mut [u8] = &mut self.rgb;
        let out_stride = width * 3;
        let data = &frame.data[..needed];
        match frame.format {
            PixelFormat::Yuyv => {
                let (row, rows) = (width.div_ceil(2) as usize * 4, height as usize);
                let yuy = if stride == row {
                    &data[..row * rows]
                } else {
                    self.tight.clear();
                    copy_rows(data, stride, row, rows, &mut self.tight);
                    &self.tight
                };
                let packed = YuvPackedImage {
                    yuy,
                    yuy_stride: row as u32,
                    width,
                    height,
                };
                yuvutils_rs::yuyv422_to_rgb(
                    &packed,
                    out,
                    out_stride,
                    YuvRange::Limited,
                    YuvStandardMatrix::Bt601,
                )
                .map_err(|e| corrupt(e.to_string()))?;
            }
            PixelFormat::Nv12 => {
                let (row, rows) = (width as usize, height as usize);
                let (uv_row, uv_rows) =
                    (width.div_ceil(2) as usize * 2, height.div_ceil(2) as usize);
                let (y_data, uv_data) = data.split_at(stride * rows);
                let (y_plane, uv_plane) = if stride == row && stride == uv_row {
                    (y_data, &uv_data[..uv_row * uv_rows])
                } else {
                    self.tight.clear();
                    copy_rows(y_data, stride, row, rows, &mut self.tight);
                    copy_rows(uv_data, stride, uv_row, uv_rows, &mut self.tight);
                    self.tight.split_at(row * rows)
                };
                let planes = YuvBiPlanarImage {
                    y_plane,
                    y_stride: row as u32,
                    uv_plane,
                    uv_stride: uv_row as u32,
                    width,
                    height,
                };
                yuvutils_rs::yuv_nv12_to_rgb(
                    &planes,
                    out,
                    out_stride,
                    YuvRange::Limited,
                    YuvStandardMatrix::Bt601,
                    YuvConversionMode::Balanced,
                )
                .map_err(|e| corrupt(e.to_string()))?;
            }
            PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Grey => {
                let row_len = out_stride as usize;
                for (row, out_row) in data.chunks(stride).zip(out.chunks_exact_mut(row_len)) {
                    match frame.format {
                        PixelFormat::Rgb24 => out_row.copy_from_slice(&row[..row_len]),
                        PixelFormat::Bgr24 => {
                            for (o, i) in out_row.chunks_exact_mut(3).zip(row.chunks_exact(3)) {
                                o.copy_from_slice(&[i[2], i[1], i[0]]);
                            }
                        }
                        _ => {
                            for (o, &y) in out_row.chunks_exact_mut(3).zip(&row[..width as usize]) {
                                o.fill(y);
                            }
                        }
                    }
                }
            }
            PixelFormat::Mjpeg | PixelFormat::Encoded => unreachable!("decoded above"),
        }
        Ok(&self.rgb)
    }
}

/// Appends the first `rows` rows of `data`, each `row` bytes long, without the padding that
/// takes each to `stride`.
fn copy_rows(data: &[u8], stride: usize, row: usize, rows: usize, out: &mut Vec<u8>) {
    for line in data.chunks(stride).take(rows) {
        out.extend_from_slice(&line[..row]);
    }
}

/// Bytes a raw frame needs: every row at `stride` (V4L2's `sizeimage` covers them all), and for
/// NV12 the half-height chroma plane after the luma plane. Refused, with the reason: a stride
/// shorter than a row, and sizes whose bytes (or whose RGB row, a `u32`) would not fit in
/// memory's arithmetic, which on a 32-bit board wraps around from 4 GiB.
fn raw_len(format: PixelFormat, width: u32, height: u32, stride: usize) -> Result<usize, String> {
    let too_large = || {
        format!("{width} × {height} pixels at {stride} bytes a row is more than memory can hold")
    };
    let row = format.min_stride(width).ok_or_else(too_large)?;
    if stride < row {
        return Err(format!(
            "its stride, {stride} bytes a row, is less than a row of {width} pixels takes \
             ({row} bytes)"
        ));
    }
    width.checked_mul(3).ok_or_else(too_large)?;
    let rows = height as usize;
    let rows = match format {
        PixelFormat::Nv12 => rows.checked_add(rows.div_ceil(2)),
        _ => Some(rows),
    };
    rows.and_then(|rows| rows.checked_mul(stride))
        .ok_or_else(too_large)
}
