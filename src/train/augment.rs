//! Augmentation: changed copies of a training photo, each one more example for the head to learn
//! from. The copies are made at feature-extraction time (the backbone is frozen, so a copy's
//! features are computed once and cached like the photo's own).

use image::RgbImage;
use image::imageops::{self, FilterType};

/// A photo as it is, or one changed copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Plain,
    /// Mirrored left to right.
    Flip,
    /// The central 85%, as if the camera were a little closer.
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
            Variant::Zoom => "zoom",
            Variant::Brighter => "bright",
            Variant::Darker => "dark",
        }
    }

    /// The changed copy of `image`.
    pub(super) fn apply(self, image: RgbImage) -> RgbImage {
        match self {
            Variant::Plain => image,
            Variant::Flip => imageops::flip_horizontal(&image),
            Variant::Zoom => {
                let (width, height) = image.dimensions();
                let (w, h) = ((width * 85 / 100).max(1), (height * 85 / 100).max(1));
                let crop =
                    imageops::crop_imm(&image, (width - w) / 2, (height - h) / 2, w, h).to_image();
                imageops::resize(&crop, width, height, FilterType::CatmullRom)
            }
            Variant::Brighter => scale_brightness(image, 1.12),
            Variant::Darker => scale_brightness(image, 0.88),
        }
    }
}

fn scale_brightness(mut image: RgbImage, factor: f32) -> RgbImage {
    for value in image.iter_mut() {
        *value = (f32::from(*value) * factor).round().clamp(0.0, 255.0) as u8;
    }
    image
}
