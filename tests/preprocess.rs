//! pinsight's input tensor against the one models/preprocess.py makes (the contract the model was
//! calibrated with). The reference crops in tests/fixtures/preprocess were written by
//! `python models/preprocess.py PHOTO OUT.png`: the 224 × 224 image before normalisation, so the
//! reference tensor is exactly `(v - 127) / 128` of its pixels.

mod common;

use pinsight::decode::load_rgb;
use pinsight::preprocess::{INPUT_LEN, INPUT_SIDE, Preprocessor};

/// Max and mean absolute difference between pinsight's tensor and the reference, in tensor units.
fn compare(photo: &str, reference: &str) -> (f32, f32) {
    let image = load_rgb(&common::repo().join(photo)).unwrap();
    let mut input = Vec::new();
    Preprocessor::default().tensor(&image, &mut input);
    assert_eq!(input.len(), INPUT_LEN);

    let expected = image::open(common::repo().join(reference))
        .unwrap()
        .into_rgb8();
    assert_eq!(expected.dimensions(), (INPUT_SIDE, INPUT_SIDE));
    let plane = INPUT_LEN / 3;
    let (mut max, mut sum) = (0f32, 0f32);
    for (i, pixel) in expected.pixels().enumerate() {
        for (channel, &value) in pixel.0.iter().enumerate() {
            let difference =
                (input[channel * plane + i] - (f32::from(value) - 127.0) / 128.0).abs();
            max = max.max(difference);
            sum += difference;
        }
    }
    let mean = sum / INPUT_LEN as f32;
    println!(
        "{photo}: max abs difference {max:.5} ({:.1} levels), mean {mean:.6}",
        max * 128.0
    );
    (max, mean)
}

// A PNG decodes to the same pixels everywhere: what differs is only the resampling.
#[test]
fn png_matches_the_export_script() {
    let (max, mean) = compare(
        "samples/chelsea.png",
        "tests/fixtures/preprocess/chelsea.crop.png",
    );
    assert!(max <= 2.0 / 128.0, "max {max}");
    assert!(mean <= 0.5 / 128.0, "mean {mean}");
}

// JPEG decoders (libjpeg-turbo in Pillow, zune-jpeg here) may differ by a level or two.
#[test]
fn jpeg_matches_the_export_script() {
    for (photo, reference) in [
        (
            "tests/fixtures/photos/clothing-t-shirt-0af4203f.jpg",
            "tests/fixtures/preprocess/clothing-t-shirt-0af4203f.crop.png",
        ),
        (
            "samples/rocket.jpg",
            "tests/fixtures/preprocess/rocket.crop.png",
        ),
    ] {
        let (max, mean) = compare(photo, reference);
        assert!(max <= 8.0 / 128.0, "{photo}: max {max}");
        assert!(mean <= 1.0 / 128.0, "{photo}: mean {mean}");
    }
}
