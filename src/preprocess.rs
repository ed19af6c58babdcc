//! From a decoded RGB image to the backbone's input tensor.
//!
//! The contract (the same as `models/preprocess.py`, which made the model's calibration data):
//! resize so the short side is 256 pixels with a bicubic (Catmull-Rom) filter that antialiases
//! when shrinking, centre-crop 224 × 224, then `(v − 127) / 128` for each 0–255 value, laid out
//! as 1 × 3 × 224 × 224 RGB planes.
//!
//! The resize and the crop are one SIMD resampling pass (fast_image_resize) over the source
//! region that the crop keeps: the filter weights are the same as resizing the whole image and
//! cropping afterwards, without computing the pixels that the crop throws away. That pass is
//! [`resize_region`], which training's augmentation uses too, so that a zoomed training photo is
//! resampled exactly as a frame is.

use fast_image_resize::{CropBox, FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

/// The side of the square input the backbone takes.
pub const INPUT_SIDE: u32 = 224;
/// Values in the input tensor: 3 planes of `INPUT_SIDE`².
pub const INPUT_LEN: usize = 3 * (INPUT_SIDE * INPUT_SIDE) as usize;
const RESIZE_SHORT: u32 = 256;
const MEAN: f32 = 127.0;
const SCALE: f32 = 128.0;

/// The size an image of `width` × `height` is resized to before the crop. In `u64`: the long
/// side of a thin image outgrows `u32` (1 × 16777216 pixels becomes 256 × 2³²), and both sides
/// are at least 256. An empty side counts as one pixel.
pub fn resized_size(width: u32, height: u32) -> (u64, u64) {
    let short = u64::from(RESIZE_SHORT);
    // At most (2³² − 1) · 256: no overflow in u64.
    let scale = |long: u32, short_side: u32| u64::from(long) * short / u64::from(short_side.max(1));
    if width <= height {
        (short, scale(height, width))
    } else {
        (scale(width, height), short)
    }
}

/// Resamples `region` of `image` (in source pixels, fractions allowed) to fill `out`, whose size
/// is the size wanted, with preprocessing's filter: Catmull-Rom, antialiased when shrinking.
/// `resizer` keeps its buffers from one call to the next.
///
/// # Panics
/// If either image is empty or `region` is not inside `image`.
pub fn resize_region(resizer: &mut Resizer, image: &RgbImage, region: CropBox, out: &mut RgbImage) {
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
        .crop(region.left, region.top, region.width, region.height);
    resizer
        .resize(image, out, &options)
        .expect("both images are non-empty RGB8 and the region lies inside the source");
}

/// One 0–255 value of the crop as the backbone's input takes it: `(v − 127) / 128`.
#[inline]
pub fn normalise(v: u8) -> f32 {
    (f32::from(v) - MEAN) / SCALE
}

/// Turns images into input tensors, reusing its buffers from one image to the next.
pub struct Preprocessor {
    resizer: Resizer,
    crop: RgbImage,
}

impl Default for Preprocessor {
    fn default() -> Self {
        Preprocessor {
            resizer: Resizer::new(),
            crop: RgbImage::new(INPUT_SIDE, INPUT_SIDE),
        }
    }
}

impl Preprocessor {
    /// The resized and centre-cropped 224 × 224 image, before normalisation.
    ///
    /// # Panics
    /// If `image` is empty (decoding and frame conversion refuse empty images).
    pub fn crop(&mut self, image: &RgbImage) -> &RgbImage {
        let (width, height) = image.dimensions();
        let (resized_width, resized_height) = resized_size(width, height);
        // Both resized sides are at least RESIZE_SHORT > INPUT_SIDE, and below 2⁴¹: exact in
        // f64.
        let cropped = u64::from(INPUT_SIDE);
        let scale_x = f64::from(width) / resized_width as f64;
        let scale_y = f64::from(height) / resized_height as f64;
        let left = ((resized_width - cropped) / 2) as f64 * scale_x;
        let top = ((resized_height - cropped) / 2) as f64 * scale_y;
        let side = f64::from(INPUT_SIDE);
        let region = CropBox {
            left,
            top,
            width: side * scale_x,
            height: side * scale_y,
        };
        resize_region(&mut self.resizer, image, region, &mut self.crop);
        &self.crop
    }

    /// Writes the normalised input tensor for `image` into `input` (resized to `INPUT_LEN`).
    pub fn tensor(&mut self, image: &RgbImage, input: &mut Vec<f32>) {
        let crop = self.crop(image);
        input.resize(INPUT_LEN, 0.0);
        let plane = (INPUT_SIDE * INPUT_SIDE) as usize;
        let (red, rest) = input.split_at_mut(plane);
        let (green, blue) = rest.split_at_mut(plane);
        for (i, pixel) in crop.pixels().enumerate() {
            let [r, g, b] = pixel.0;
            red[i] = normalise(r);
            green[i] = normalise(g);
            blue[i] = normalise(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_side_becomes_256() {
        assert_eq!(resized_size(451, 300), (384, 256));
        assert_eq!(resized_size(300, 451), (256, 384));
        assert_eq!(resized_size(227, 227), (256, 256));
        assert_eq!(resized_size(640, 480), (341, 256));
    }

    #[test]
    fn thin_images_do_not_overflow() {
        // The 1 × 16777216 PNG of issue 11: its long side became 2³², which wrapped to 0 in u32.
        assert_eq!(resized_size(1, 16_777_216), (256, 1 << 32));
        assert_eq!(resized_size(u32::MAX, 1), (u64::from(u32::MAX) * 256, 256));
        assert_eq!(resized_size(0, 5), (256, 1280));
        // The thinnest image decoding lets through still makes a whole 224 × 224 crop.
        let image = RgbImage::from_pixel(1, crate::decode::MAX_SIDE, image::Rgb([9, 8, 7]));
        let mut input = Vec::new();
        Preprocessor::default().tensor(&image, &mut input);
        assert_eq!(input.len(), INPUT_LEN);
        assert!(input.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn uniform_image_gives_uniform_tensor() {
        let image = RgbImage::from_pixel(640, 480, image::Rgb([255, 127, 0]));
        let mut input = Vec::new();
        Preprocessor::default().tensor(&image, &mut input);
        let plane = INPUT_LEN / 3;
        assert!(input[..plane].iter().all(|&v| v == 1.0));
        assert!(input[plane..2 * plane].iter().all(|&v| v == 0.0));
        assert!(input[2 * plane..].iter().all(|&v| v == -127.0 / 128.0));
    }
}
