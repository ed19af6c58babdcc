//! Measurements for `pinsight bench`: what each stage of the per-frame path costs on this
//! machine. Medians of repeated runs; nothing here is asserted, only reported.

use std::time::Instant;

use image::RgbImage;

use crate::frame::{Converter, Frame, PixelFormat};
use crate::preprocess::Preprocessor;

/// The formats a camera hands over, in the order the report lists them.
pub const CAMERA_FORMATS: [PixelFormat; 6] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Grey,
    PixelFormat::Mjpeg,
];

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub median_ms: f64,
    pub p99_ms: f64,
}

/// Runs `work` `runs` times (after one warm-up run) and returns the median and 99th percentile.
pub fn time(runs: usize, mut work: impl FnMut()) -> Timing {
    work();
    let mut samples: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Timing {
        median_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

/// The cost of turning one camera frame into the model's input tensor: conversion to RGB,
/// then resize, crop and normalisation.
pub fn frame_to_input(frame: &Frame, runs: usize) -> Timing {
    let mut converter = Converter::default();
    let mut preprocessor = Preprocessor::default();
    let mut input = Vec::new();
    time(runs, || {
        let rgb = converter.to_rgb(frame).expect("a synthetic frame converts");
        preprocessor.tensor(rgb, &mut input);
    })
}

/// `photo` resized to `width` × `height` and encoded as a camera would send it (BT.601
/// limited-range YUV, tightly packed rows; MJPEG at quality 85).
pub fn camera_frame(photo: &RgbImage, format: PixelFormat, width: u32, height: u32) -> Frame {
    let rgb = image::imageops::resize(photo, width, height, image::imageops::FilterType::Triangle);
    let (w, h) = (width as usize, height as usize);
    let pixel = |x: usize, y: usize| rgb.get_pixel(x as u32, y as u32).0;
    let (stride, data) = match format {
        PixelFormat::Yuyv => {
            let mut data = Vec::with_capacity(w * h * 2);
            for y in 0..h {
                for x in (0..w).step_by(2) {
                    let (y0, u, v) = yuv(pixel(x, y));
                    let (y1, _, _) = yuv(pixel((x + 1).min(w - 1), y));
                    data.extend([y0, u, y1, v]);
                }
            }
            (w.div_ceil(2) * 4, data)
        }
        PixelFormat::Nv12 => {
            let mut data: Vec<u8> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (y, x)))
                .map(|(y, x)| yuv(pixel(x, y)).0)
                .collect();
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    let (_, u, v) = yuv(pixel(x, y));
                    data.extend([u, v]);
                }
            }
            (w, data)
        }
        PixelFormat::Rgb24 => (w * 3, rgb.as_raw().clone()),
        PixelFormat::Bgr24 => (
            w * 3,
            rgb.pixels().flat_map(|p| [p[2], p[1], p[0]]).collect(),
        ),
        PixelFormat::Grey => (w, rgb.pixels().map(|p| yuv(p.0).0).collect()),
        PixelFormat::Mjpeg | PixelFormat::Encoded => {
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
                .encode_image(&rgb)
                .expect("encoding to memory");
            (0, jpeg)
        }
    };
    Frame {
        sequence: 0,
        captured_at: Instant::now(),
        format,
        width,
        height,
        stride,
        data,
        origin: "bench".into(),
    }
}

/// BT.601 limited range, as V4L2 defines it for SDTV YUV.
fn yuv([r, g, b]: [u8; 3]) -> (u8, u8, u8) {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    (y.round() as u8, u.round() as u8, v.round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_frames_convert_back_to_their_photo() {
        let photo = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        });
        let mut converter = Converter::default();
        for format in CAMERA_FORMATS {
            let frame = camera_frame(&photo, format, 32, 24);
            let rgb = converter.to_rgb(&frame).unwrap();
            assert_eq!(rgb.dimensions(), (32, 24), "{format:?}");
            let reference =
                image::imageops::resize(&photo, 32, 24, image::imageops::FilterType::Triangle);
            let error: f64 = rgb
                .as_raw()
                .iter()
                .zip(reference.as_raw())
                .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                .sum::<f64>()
                / rgb.as_raw().len() as f64;
            let tolerance = if format == PixelFormat::Grey {
                60.0
            } else {
                6.0
            };
            assert!(error < tolerance, "{format:?}: mean error {error}");
        }
    }

    #[test]
    fn time_reports_ordered_quantiles() {
        let mut n = 0u64;
        let timing = time(20, || n = n.wrapping_add(1));
        assert!(timing.median_ms <= timing.p99_ms);
        assert_eq!(n, 21, "one warm-up run and twenty measured");
    }
}
