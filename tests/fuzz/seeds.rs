//! The seed corpus that is made rather than found: tiny frames of every pixel format, tiny
//! images of every format pinsight decodes, a tiny int8 backbone, a head for it, deployment
//! configs. `cargo test --release --test fuzz -- --ignored write_seeds` writes them into
//! `tests/fuzz/corpus/` (named `seed-*`, and the head's base folder); the crashes the fuzzer
//! found are kept beside them as regressions and never rewritten here.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use pinsight::checksum::sha256_hex;
use pinsight::frame::PixelFormat;
use pinsight::model::head::{self, DenseLayer};
use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto, tensor_proto, tensor_shape_proto,
    type_proto,
};

use super::targets::{HEAD_FILES, frame_input};

pub fn write_all(corpus: &Path) {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    for (name, bytes) in frames() {
        write("frame", &format!("seed-{name}"), &bytes);
    }
    for (name, bytes) in images() {
        write("decode", &format!("seed-{name}"), &bytes);
    }
    let backbone = tiny_backbone();
    write("int8_graph", "tiny-backbone.onnx", &backbone);
    let base = head_base(&sha256_hex(&backbone));
    for (name, bytes) in HEAD_FILES.iter().zip(&base).take(3) {
        write("head/base", name, bytes);
    }
    for (which, name) in HEAD_FILES.iter().enumerate() {
        let content = match which {
            3 => HEAD_FILES[..3]
                .iter()
                .zip(&base)
                .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
                .collect::<String>()
                .into_bytes(),
            _ => base[which].clone(),
        };
        write(
            "head",
            &format!("seed-{name}"),
            &[&[which as u8][..], &content].concat(),
        );
    }
    let hidden = head::head_onnx(&[
        DenseLayer {
            weights: &ramp(8 * 3, 0.1),
            bias: &[0.0, 0.1, -0.1],
            inputs: 8,
            outputs: 3,
        },
        DenseLayer {
            weights: &ramp(3 * 2, 0.3),
            bias: &[0.5, -0.5],
            inputs: 3,
            outputs: 2,
        },
    ]);
    write(
        "head",
        "seed-hidden-head.onnx",
        &[&[0][..], &hidden].concat(),
    );
    for (name, bytes) in configs() {
        write("config", &format!("seed-{name}"), &bytes);
    }
}

/// `n` weights from −`scale` to `scale`.
fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| scale * (2.0 * i as f32 / (n - 1) as f32 - 1.0))
        .collect()
}

/// A small picture with some structure: a gradient and a disc.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (dx, dy) = (x as i32 - width as i32 / 2, y as i32 - height as i32 / 2);
        let inside = dx * dx + dy * dy < (width.min(height) as i32 / 3).pow(2);
        let r = (255 * x / width.max(2)) as u8;
        let g = (255 * y / height.max(2)) as u8;
        if inside {
            Rgb([255 - r, 40, g])
        } else {
            Rgb([r, g, 128])
        }
    })
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn jpeg(width: u32, height: u32, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality);
    picture(width, height).write_with_encoder(encoder).unwrap();
    bytes
}

/// The JPEG without its Huffman tables (DHT segments), as UVC cameras send MJPEG frames.
fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && jpeg[at + 1] != 0xDA {
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if jpeg[at + 1] != 0xC4 {
            out.extend_from_slice(&jpeg[at..at + 2 + length]);
        }
        at += 2 + length;
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// The JPEG with an EXIF segment saying how to turn it (`orientation` 1 to 8).
fn with_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend([
        0x12,
        0x01,
        3,
        0,
        1,
        0,
        0,
        0,
        orientation,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend((app1.len() as u16 + 2).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

fn frames() -> Vec<(String, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut raw = |name: &str, format, width: u32, height: u32, stride: u32, rows: u32| {
        let data: Vec<u8> = (0..stride * rows).map(|i| (i * 37 % 251) as u8).collect();
        frames.push((
            name.to_string(),
            frame_input(format, width, height, stride, &data),
        ));
    };
    raw("yuyv-6x4", PixelFormat::Yuyv, 6, 4, 12, 4);
    raw("yuyv-5x3-padded", PixelFormat::Yuyv, 5, 3, 16, 3);
    raw("nv12-6x4", PixelFormat::Nv12, 6, 4, 6, 6);
    raw("nv12-5x3-padded", PixelFormat::Nv12, 5, 3, 8, 5);
    raw("rgb3-3x2-padded", PixelFormat::Rgb24, 3, 2, 12, 2);
    raw("bgr3-4x3", PixelFormat::Bgr24, 4, 3, 12, 3);
    raw("grey-5x3-padded", PixelFormat::Grey, 5, 3, 7, 3);
    let mjpeg = jpeg(17, 9, 80);
    frames.push((
        "mjpg-17x9".into(),
        frame_input(PixelFormat::Mjpeg, 0, 0, 0, &mjpeg),
    ));
    let bare = strip_huffman_tables(&mjpeg);
    assert!(bare.len() < mjpeg.len());
    frames.push((
        "mjpg-17x9-no-tables".into(),
        frame_input(PixelFormat::Mjpeg, 0, 0, 0, &bare),
    ));
    let png = encode(picture(5, 3).into(), ImageFormat::Png);
    frames.push((
        "file-png-5x3".into(),
        frame_input(PixelFormat::Encoded, 0, 0, 0, &png),
    ));
    frames
}

fn images() -> Vec<(String, Vec<u8>)> {
    let small = picture(13, 7);
    let jpeg_13x7 = jpeg(13, 7, 90);
    vec![
        ("13x7.jpg".into(), jpeg_13x7.clone()),
        ("13x7-turned.jpg".into(), with_orientation(&jpeg_13x7, 6)),
        (
            "13x7-no-tables.jpg".into(),
            strip_huffman_tables(&jpeg_13x7),
        ),
        (
            "13x7.png".into(),
            encode(small.clone().into(), ImageFormat::Png),
        ),
        (
            "13x7-grey-alpha-16.png".into(),
            encode(
                DynamicImage::from(small.clone()).into_luma_alpha16().into(),
                ImageFormat::Png,
            ),
        ),
        (
            "13x7.webp".into(),
            encode(small.clone().into(), ImageFormat::WebP),
        ),
        ("13x7.bmp".into(), encode(small.into(), ImageFormat::Bmp)),
    ]
}

fn configs() -> Vec<(String, Vec<u8>)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let door = std::fs::read(repo.join("board/examples/door.toml")).unwrap();
    let generic = b"board = \"generic\"\n\n[gpio]\nchip = \"gpio-sim\"\n\n[trigger]\npin = 3\n\
        edge = \"both\"\n\n[outputs.ready]\npin = 0\nsafe = \"high\"\n\n[outputs.classes]\n\
        dog = 1\ncat = { pin = 2, active_low = true, mode = \"pulse\", pulse_ms = 100 }\n"
        .to_vec();
    let board = std::fs::read(repo.join("board/raspberry-pi-4.toml")).unwrap();
    let own_board = [
        &b"board = \"board.toml\"\n\n[outputs.match]\npin = \"pin29\"\nlabels = [\"dog\"]\n"[..],
        b"\0",
        &board,
    ]
    .concat();
    vec![
        ("door.toml".into(), door),
        ("generic.toml".into(), generic),
        ("own-board.toml".into(), own_board),
    ]
}

/// The head folder the `head` target changes: a linear head from 8 features (the tiny
/// backbone's) to 2 classes. Its files in [`HEAD_FILES`] order, SHA256SUMS last.
fn head_base(backbone_sha256: &str) -> Vec<Vec<u8>> {
    let onnx = head::head_onnx(&[DenseLayer {
        weights: &ramp(16, 0.5),
        bias: &[0.1, -0.1],
        inputs: 8,
        outputs: 2,
    }]);
    let labels = b"dog\ncat\n".to_vec();
    let meta = format!(
        "{{\n  \"name\": \"fuzz\",\n  \"classes\": 2,\n  \"backbone_sha256\": [\"{backbone_sha256}\"]\n}}\n"
    )
    .into_bytes();
    let sums = [
        (head::ONNX_FILE, &onnx),
        (head::LABELS_FILE, &labels),
        (head::META_FILE, &meta),
    ]
    .iter()
    .map(|(name, bytes)| format!("{}  {name}\n", sha256_hex(bytes)))
    .collect::<String>()
    .into_bytes();
    vec![onnx, labels, meta, sums]
}

// ---------------------------------------------------------------------------------------------
// A tiny int8 backbone, in the QDQ form onnxruntime's quantize_static writes

/// A QDQ backbone of the bundled one's shape, a few hundred weights in all: image
/// [1, 3, 224, 224] → Q → 3 × 3 stride-4 Conv + Relu (4 channels; im2col) → depthwise 3 × 3
/// Conv + Clip → pointwise Conv → Add (the residual) → pointwise Conv (8 channels) → mean over
/// H and W → features [1, 8].
fn tiny_backbone() -> Vec<u8> {
    let mut g = Graph::default();
    g.scalar_quantization("q_image", 1.0 / 128.0, 128);
    g.node(
        "QuantizeLinear",
        &["image", "q_image.scale", "q_image.zero"],
        "image.q",
        vec![],
    );
    g.node(
        "DequantizeLinear",
        &["image.q", "q_image.scale", "q_image.zero"],
        "image.dq",
        vec![],
    );
    g.conv(
        "stem",
        "image.dq",
        1.0 / 128.0,
        [4, 3, 3, 3],
        1,
        [4, 4],
        [1, 1, 1, 1],
    );
    g.node("Relu", &["stem"], "stem.relu", vec![]);
    g.requantize("stem.relu", "a1", 0.05, 0);
    g.conv("dw", "a1.dq", 0.05, [4, 1, 3, 3], 4, [1, 1], [1, 1, 1, 1]);
    g.float_scalar("clip.min", 0.0);
    g.float_scalar("clip.max", 6.0);
    g.node("Clip", &["dw", "clip.min", "clip.max"], "dw.clip", vec![]);
    g.requantize("dw.clip", "a2", 0.03, 0);
    g.conv("pw", "a2.dq", 0.03, [4, 4, 1, 1], 1, [1, 1], [0, 0, 0, 0]);
    g.requantize("pw", "a3", 0.04, 128);
    g.node("Add", &["a1.dq", "a3.dq"], "sum", vec![]);
    g.requantize("sum", "a4", 0.06, 100);
    g.conv("head", "a4.dq", 0.06, [8, 4, 1, 1], 1, [1, 1], [0, 0, 0, 0]);
    g.requantize("head", "a5", 0.05, 0);
    g.node(
        "ReduceMean",
        &["a5.dq"],
        "features",
        vec![ints("axes", &[2, 3]), int("keepdims", 0)],
    );
    let graph = GraphProto {
        name: "tiny_backbone".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![float_value("image", &[1, 3, 224, 224])],
        output: vec![float_value("features", &[1, 8])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "pinsight tests/fuzz/seeds.rs".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            name: output.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
    }

    fn tensor(
        &mut self,
        name: &str,
        dims: &[i64],
        data_type: tensor_proto::DataType,
    ) -> &mut TensorProto {
        self.initializers.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: data_type as i32,
            ..Default::default()
        });
        self.initializers.last_mut().unwrap()
    }

    fn float_scalar(&mut self, name: &str, value: f32) {
        self.tensor(name, &[], tensor_proto::DataType::Float)
            .float_data = vec![value];
    }

    fn scalar_quantization(&mut self, name: &str, scale: f32, zero: u8) {
        self.float_scalar(&format!("{name}.scale"), scale);
        self.tensor(&format!("{name}.zero"), &[], tensor_proto::DataType::Uint8)
            .raw_data = vec![zero];
    }

    /// `float` → QuantizeLinear → `name`.q → DequantizeLinear → `name`.dq.
    fn requantize(&mut self, float: &str, name: &str, scale: f32, zero: u8) {
        self.scalar_quantization(name, scale, zero);
        let (s, z) = (format!("{name}.scale"), format!("{name}.zero"));
        let (q, dq) = (format!("{name}.q"), format!("{name}.dq"));
        self.node("QuantizeLinear", &[float, &s, &z], &q, vec![]);
        self.node("DequantizeLinear", &[&q, &s, &z], &dq, vec![]);
    }

    /// A Conv of `x` (whose scale is `x_scale`) with int8 weights of `dims` (per-channel
    /// scales, symmetric) and an int32 bias in the accumulator's scale, as onnxruntime writes
    /// them.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        x: &str,
        x_scale: f32,
        dims: [i64; 4],
        group: i64,
        strides: [i64; 2],
        pads: [i64; 4],
    ) {
        let m = dims[0] as usize;
        let count = dims.iter().product::<i64>() as usize;
        let weights: Vec<u8> = (0..count)
            .map(|i| ((i * 53 + m * 7) % 255) as i32 - 127)
            .map(|w| w as i8 as u8)
            .collect();
        let scales: Vec<f32> = (0..m).map(|o| 0.004 + 0.001 * o as f32).collect();
        let bias: Vec<i32> = (0..m).map(|o| (o as i32 - 2) * 40).collect();
        let (w, b) = (format!("{name}.w"), format!("{name}.b"));
        self.tensor(&w, &dims, tensor_proto::DataType::Int8)
            .raw_data = weights;
        self.tensor(
            &format!("{w}.scale"),
            &[m as i64],
            tensor_proto::DataType::Float,
        )
        .float_data = scales.clone();
        self.tensor(
            &format!("{w}.zero"),
            &[m as i64],
            tensor_proto::DataType::Int8,
        )
        .raw_data = vec![0; m];
        self.tensor(&b, &[m as i64], tensor_proto::DataType::Int32)
            .int32_data = bias;
        self.tensor(
            &format!("{b}.scale"),
            &[m as i64],
            tensor_proto::DataType::Float,
        )
        .float_data = scales.iter().map(|s| s * x_scale).collect();
        let axis = || vec![int("axis", 0)];
        self.node(
            "DequantizeLinear",
            &[&w, &format!("{w}.scale"), &format!("{w}.zero")],
            &format!("{w}.dq"),
            axis(),
        );
        self.node(
            "DequantizeLinear",
            &[&b, &format!("{b}.scale")],
            &format!("{b}.dq"),
            axis(),
        );
        self.node(
            "Conv",
            &[x, &format!("{w}.dq"), &format!("{b}.dq")],
            name,
            vec![
                ints("kernel_shape", &dims[2..]),
                ints("strides", &strides),
                ints("pads", &pads),
                int("group", group),
            ],
        );
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn float_value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = |value: i64| tensor_shape_proto::Dimension {
        value: Some(tensor_shape_proto::dimension::Value::DimValue(value)),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: tensor_proto::DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| dim(d)).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
