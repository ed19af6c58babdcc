"""The preprocessing contract of pinsight's EfficientNet-Lite0 backbone.

pinsight's Rust code (src/preprocess.rs) implements the same steps; tests compare the two.

1. Decode, turn upright by the EXIF orientation, convert to RGB (8 bits a channel).
2. Resize so the short side is 256 pixels, bicubic (Catmull-Rom, a = -0.5, with antialiasing
   when shrinking); the long side becomes floor(long * 256 / short).
3. Centre-crop 224 x 224: left = (width - 224) // 2, top = (height - 224) // 2.
4. x = (v - 127) / 128 for each 0..255 value, laid out as 1 x 3 x 224 x 224 (RGB planes).
"""

import numpy as np
from PIL import Image, ImageOps

RESIZE_SHORT = 256
CROP = 224
MEAN = 127.0
SCALE = 128.0


def resized_size(width: int, height: int) -> tuple[int, int]:
    if width <= height:
        return RESIZE_SHORT, height * RESIZE_SHORT // width
    return width * RESIZE_SHORT // height, RESIZE_SHORT


def load_rgb(path) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def to_tensor(image: Image.Image) -> np.ndarray:
    """An RGB image to the 1x3x224x224 float32 input tensor."""
    width, height = resized_size(*image.size)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left = (width - CROP) // 2
    top = (height - CROP) // 2
    image = image.crop((left, top, left + CROP, top + CROP))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - MEAN) / SCALE
    return pixels.transpose(2, 0, 1)[np.newaxis].copy()


def tensor_for(path) -> np.ndarray:
    return to_tensor(load_rgb(path))


def main():
    """Writes the 224 x 224 crop of a photo (the tensor before normalisation) as a PNG."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("image")
    parser.add_argument("out_png")
    args = parser.parse_args()
    crop = (to_tensor(load_rgb(args.image))[0].transpose(1, 2, 0) * SCALE + MEAN).round()
    Image.fromarray(crop.astype(np.uint8), "RGB").save(args.out_png)


if __name__ == "__main__":
    main()
