//! Augmentation: changed copies of a training photo, each one more example for the head to learn
//! from. The copies are made at feature-extraction time (the backbone is frozen, so a copy's
//! features are computed once and cached like the photo's own).

use fast_image_resize::{CropBox, Resizer};
use image::RgbImage;
use image::imageops;

use crate::preprocess::resize_region;

/// The share of each side that [`Variant::Zoom`] keeps.
const ZOOM_KEEP: f64 = 0.85;

/// A photo as it is, or one changed copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Plain,
    /// Mirrored left to right.
    Flip,
    /// The central 85% of each side, as if the camera were a little closer.
    Zoom,
    /// 12% brighter.
    Brighter,
    /// 12% darker.
    Darker,
}

impl Variant {
    /// The photo and every changed copy: what `--augment` trains on.
    pub const AUGMENTED: [Variant; 5] = [
        Variant::Plain,
        Variant::Flip,
        Variant::Zoom,
        Variant::Brighter,
        Variant::Darker,
    ];

    /// The variant's name in cache file names. Change it whenever the variant's pixels change,
    /// so that features of the old pixels are not read back as if they were of the new.
    pub(super) fn key(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Flip => "flip",
            // "zoom" was resampled by `image`'s resize, not preprocessing's.
            Variant::Zoom => "zoom2",
            Variant::Brighter => "bright",
            Variant::Darker => "dark",
        }
    }

    /// The changed copy of `image`.
    pub(super) fn apply(self, image: RgbImage) -> RgbImage {
        match self {
            Variant::Plain => image,
            Variant::Flip => imageops::flip_horizontal(&image),
            Variant::Zoom => zoom(&image),
            Variant::Brighter => scale_brightness(image, 1.12),
            Variant::Darker => scale_brightness(image, 0.88),
        }
    }
}

/// The central [`ZOOM_KEEP`] of each side, resampled to the photo's size by the resampler
/// preprocessing uses.
fn zoom(image: &RgbImage) -> RgbImage {
    let (width, height) = image.dimensions();
    let (kept_width, kept_height) = (f64::from(width) * ZOOM_KEEP, f64::from(height) * ZOOM_KEEP);
    let region = CropBox {
        left: (f64::from(width) - kept_width) / 2.0,
        top: (f64::from(height) - kept_height) / 2.0,
        width: kept_width,
        height: kept_height,
    };
    let mut zoomed = RgbImage::new(width, height);
    resize_region(&mut Resizer::new(), image, region, &mut zoomed);
    zoomed
}

fn scale_brightness(mut image: RgbImage, factor: f32) -> RgbImage {
    for value in image.iter_mut() {
        *value = (f32::from(*value) * factor).round().clamp(0.0, 255.0) as u8;
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_keeps_the_size_and_drops_the_edges() {
        // A blue photo in a red frame 5% of each side wide: zooming to the central 85% leaves
        // only blue, far enough from the frame that the filter never reaches it.
        let (width, height) = (200, 100);
        let photo = RgbImage::from_fn(width, height, |x, y| {
            let frame = x < 10 || y < 5 || x >= width - 10 || y >= height - 5;
            image::Rgb(if frame { [255, 0, 0] } else { [0, 0, 255] })
        });
        let zoomed = Variant::Zoom.apply(photo);
        assert_eq!(zoomed.dimensions(), (width, height));
        assert!(zoomed.pixels().all(|p| p.0 == [0, 0, 255]));
    }

    #[test]
    fn brightness_saturates_instead_of_wrapping() {
        let photo = RgbImage::from_pixel(2, 2, image::Rgb([250, 100, 0]));
        assert_eq!(
            Variant::Brighter.apply(photo.clone()).get_pixel(0, 0).0,
            [255, 112, 0]
        );
        assert_eq!(Variant::Darker.apply(photo).get_pixel(0, 0).0, [220, 88, 0]);
    }
}
