//! Decoding photos from files into 8-bit RGB.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::{Error, Result};

/// Decodes an image file (JPEG, PNG, WebP, BMP) into RGB, turned upright by its EXIF orientation
/// as a phone's photo viewer would show it.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let error = |e: image::ImageError| Error::Image {
        path: path.into(),
        reason: e.to_string(),
    };
    let reader = ImageReader::open(path)
        .map_err(Error::read(path))?
        .with_guessed_format()
        .map_err(Error::read(path))?;
    let mut decoder = reader.into_decoder().map_err(error)?;
    let orientation = decoder.orientation().map_err(error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(error)?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}
