//! Frame conversion for every pixel format pinsight reads, against known pixel values.

use std::time::Instant;

use image::RgbImage;
use pinsight::frame::{ConvertError, Converter, Frame, PixelFormat};

fn frame(format: PixelFormat, width: u32, height: u32, stride: usize, data: Vec<u8>) -> Frame {
    Frame {
        sequence: 0,
        captured_at: Instant::now(),
        format,
        width,
        height,
        stride,
        data,
        origin: "test".into(),
    }
}

fn assert_near(image: &RgbImage, x: u32, y: u32, expected: [u8; 3], tolerance: u8) {
    let got = image.get_pixel(x, y).0;
    let close = got
        .iter()
        .zip(expected)
        .all(|(&g, e)| g.abs_diff(e) <= tolerance);
    assert!(
        close,
        "pixel ({x}, {y}) is {got:?}, expected {expected:?} ± {tolerance}"
    );
}

/// BT.601 limited-range YUV of a few colours, as a webcam sends them.
const WHITE: [u8; 3] = [235, 128, 128];
const BLACK: [u8; 3] = [16, 128, 128];
const RED: [u8; 3] = [81, 90, 240];
const BLUE: [u8; 3] = [41, 240, 110];

#[test]
fn yuyv_gives_known_colours() {
    // 4×2: left pair white, right pair red; second row black, blue. 4 bytes of padding a row.
    let pair = |[y, u, v]: [u8; 3]| [y, u, y, v];
    let mut data = Vec::new();
    for (left, right) in [(WHITE, RED), (BLACK, BLUE)] {
        data.extend(pair(left));
        data.extend(pair(right));
        data.extend([0xAA; 4]);
    }
    let mut converter = Converter::default();
    let rgb = converter
        .to_rgb(&frame(PixelFormat::Yuyv, 4, 2, 12, data))
        .unwrap();
    assert_eq!(rgb.dimensions(), (4, 2));
    assert_near(rgb, 0, 0, [255, 255, 255], 2);
    assert_near(rgb, 1, 0, [255, 255, 255], 2);
    assert_near(rgb, 2, 0, [255, 0, 0], 3);
    assert_near(rgb, 0, 1, [0, 0, 0], 2);
    assert_near(rgb, 3, 1, [0, 0, 255], 3);
}

#[test]
fn nv12_gives_known_colours() {
    // 4×2 with a stride of 6: Y plane, then one row of interleaved U V for two 2×2 blocks.
    let (width, stride) = (4usize, 6usize);
    let mut data = vec![0u8; stride * 3];
    for (block, colour) in [WHITE, BLUE].into_iter().enumerate() {
        for row in 0..2 {
            for col in 0..2 {
                data[row * stride + block * 2 + col] = colour[0];
            }
        }
        data[2 * stride + block * 2] = colour[1];
        data[2 * stride + block * 2 + 1] = colour[2];
    }
    let mut converter = Converter::default();
    let rgb = converter
        .to_rgb(&frame(PixelFormat::Nv12, width as u32, 2, stride, data))
        .unwrap();
    assert_near(rgb, 0, 0, [255, 255, 255], 2);
    assert_near(rgb, 1, 1, [255, 255, 255], 2);
    assert_near(rgb, 2, 0, [0, 0, 255], 3);
    assert_near(rgb, 3, 1, [0, 0, 255], 3);
}

#[test]
fn rgb_bgr_and_grey_are_exact() {
    let mut converter = Converter::default();
    // 2×2 RGB with 2 bytes of padding a row.
    let rgb_data = vec![1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0];
    assert!(
        converter
            .to_rgb(&frame(PixelFormat::Rgb24, 2, 2, 8, rgb_data[..14].to_vec()))
            .is_err()
    );
    let rgb = converter
        .to_rgb(&frame(PixelFormat::Rgb24, 2, 2, 8, rgb_data))
        .unwrap()
        .clone();
    assert_eq!(rgb.as_raw(), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    let bgr_data = vec![3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10];
    let bgr = converter
        .to_rgb(&frame(PixelFormat::Bgr24, 2, 2, 6, bgr_data))
        .unwrap()
        .clone();
    assert_eq!(bgr.as_raw(), rgb.as_raw());

    let grey = converter
        .to_rgb(&frame(PixelFormat::Grey, 3, 1, 3, vec![0, 128, 255]))
        .unwrap();
    assert_eq!(grey.as_raw(), &[0, 0, 0, 128, 128, 128, 255, 255, 255]);
}

#[test]
fn short_frames_are_refused() {
    let mut converter = Converter::default();
    let short = converter
        .to_rgb(&frame(PixelFormat::Yuyv, 640, 480, 1280, vec![0; 1000]))
        .err();
    assert!(
        matches!(
            short,
            Some(ConvertError::Short {
                needed: 614400,
                got: 1000,
                ..
            })
        ),
        "{short:?}"
    );
    let narrow = converter
        .to_rgb(&frame(PixelFormat::Rgb24, 4, 4, 6, vec![0; 100]))
        .err();
    assert!(
        matches!(&narrow, Some(ConvertError::Corrupt { reason, .. }) if reason.contains("stride")),
        "stride below the row: {narrow:?}"
    );
    // An odd-width NV12 frame's chroma rows are a byte longer than its luma rows (found by
    // tests/fuzz.rs: a stride of the width alone panicked).
    let odd = converter
        .to_rgb(&frame(PixelFormat::Nv12, 5, 3, 5, vec![0; 40]))
        .err();
    assert!(
        matches!(&odd, Some(ConvertError::Corrupt { reason, .. }) if reason.contains("(6 bytes)")),
        "{odd:?}"
    );
    // Sizes whose product wraps around (as a 32-bit board's do from 4 GiB) are refused.
    let huge = converter
        .to_rgb(&frame(PixelFormat::Grey, 4, 3, usize::MAX / 2, vec![0; 40]))
        .err();
    assert!(
        matches!(&huge, Some(ConvertError::Corrupt { reason, .. }) if reason.contains("memory")),
        "{huge:?}"
    );
}

/// Removes the DHT (Huffman table) segments of a JPEG, as many UVC cameras send MJPEG frames.
fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        if marker == 0xDA {
            break; // start of scan: the rest is entropy-coded data
        }
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[at..at + 2 + length]);
        }
        at += 2 + length;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

const MJPEG_FIXTURE: &str = "tests/fixtures/frames/vivid-like-640x480.jpg";

#[test]
fn mjpeg_frames_decode_with_or_without_huffman_tables() {
    let jpeg = std::fs::read(MJPEG_FIXTURE).unwrap();
    let bare = strip_huffman_tables(&jpeg);
    assert!(
        bare.len() < jpeg.len(),
        "the fixture has Huffman tables to strip"
    );

    let mut converter = Converter::default();
    let with_tables = converter
        .to_rgb(&frame(PixelFormat::Mjpeg, 0, 0, 0, jpeg))
        .unwrap()
        .clone();
    assert_eq!(with_tables.dimensions(), (640, 480));
    let without = converter
        .to_rgb(&frame(PixelFormat::Mjpeg, 0, 0, 0, bare))
        .unwrap()
        .clone();
    assert!(
        with_tables == without,
        "the standard tables the encoder used are the defaults"
    );
    // The fixture is 8 vertical colour bars: white, yellow, cyan, green, magenta, red, blue, black.
    for (bar, colour) in [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ]
    .into_iter()
    .enumerate()
    {
        assert_near(&with_tables, bar as u32 * 80 + 40, 240, colour, 12);
    }
}

#[test]
fn corrupt_mjpeg_frame_is_an_error_not_a_panic() {
    let jpeg = std::fs::read(MJPEG_FIXTURE).unwrap();
    let mut converter = Converter::default();
    let mut garbled = jpeg.clone();
    garbled[20..200].fill(0x55);
    for broken in [
        jpeg[..jpeg.len() / 3].to_vec(),
        jpeg[..jpeg.len() - 2].to_vec(),
        strip_huffman_tables(&jpeg)[..jpeg.len() / 2].to_vec(),
        vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 2],
        b"not a jpeg".to_vec(),
        garbled,
        Vec::new(),
    ] {
        match converter.to_rgb(&frame(PixelFormat::Mjpeg, 0, 0, 0, broken)) {
            Err(ConvertError::Corrupt {
                format: "MJPG",
                reason,
                ..
            }) => println!("refused: {reason}"),
            Err(other) => panic!("wrong error: {other}"),
            Ok(image) => panic!(
                "a corrupt frame decoded to a {:?} image",
                image.dimensions()
            ),
        }
    }
}
