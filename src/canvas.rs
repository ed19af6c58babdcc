//! An RGB image that embedded-graphics draws on: the confusion matrix's picture
//! (`pinsight eval`'s report) and the label on the HTTP preview ([`crate::net::http`]).

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use image::RgbImage;

/// An image that embedded-graphics draws on; pixels outside it are left out.
pub struct Canvas(pub RgbImage);

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.0.width(), self.0.height())
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb888>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Self::Error> {
        for Pixel(point, colour) in pixels {
            if let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y))
                && x < self.0.width()
                && y < self.0.height()
            {
                self.0
                    .put_pixel(x, y, image::Rgb([colour.r(), colour.g(), colour.b()]));
            }
        }
        Ok(())
    }
}
