#!/usr/bin/env python3
"""onnxruntime's pooled features of the int8 backbone, for checking pinsight's int8 engine.

    venv/bin/python models/int8_reference.py --out tests/fixtures/int8 PHOTO...
    venv/bin/python models/int8_reference.py --out /tmp/int8-ref --imagenet ../shared/data/imagenet-val --count 100

For each photo, writes its 224 x 224 crop (preprocess.py's resize and crop, before normalisation)
as `<name>.png` in --out, runs efficientnet-lite0/backbone-int8.onnx in onnxruntime (1 thread, CPU,
default graph optimisations: the QDQ nodes fuse into QLinearConv and QLinearAdd) on exactly that
crop, and writes the features to `features.json` with the backbone's SHA-256. Since the backbone
quantizes its input with scale 1/128 and zero point 127, the crop's bytes are the model's first
u8 tensor: pinsight's engine fed the same PNG sees the same integers, and the comparison
measures the engines alone. With --imagenet, the photos are the first --count held-out
ImageNet photos (not used for calibration) instead; ImageNet photos never go into the repository.
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

import preprocess

MODELS = Path(__file__).resolve().parent
BACKBONE = MODELS / "efficientnet-lite0" / "backbone-int8.onnx"


def held_out(imagenet: Path, count: int) -> list[Path]:
    calibration = set((BACKBONE.parent / "calibration.txt").read_text().split())
    names = sorted(line.split()[0] for line in (imagenet / "labels.txt").read_text().splitlines() if line)
    return [imagenet / "images" / name for name in names if name not in calibration][:count]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--imagenet", type=Path, help="take held-out ImageNet photos from this folder")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("photos", type=Path, nargs="*")
    args = parser.parse_args()
    photos = held_out(args.imagenet, args.count) if args.imagenet else args.photos
    if not photos:
        parser.error("no photos")

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(BACKBONE), options, providers=["CPUExecutionProvider"])
    args.out.mkdir(parents=True, exist_ok=True)
    features = {}
    for photo in photos:
        tensor = preprocess.tensor_for(photo)
        crop = (tensor[0].transpose(1, 2, 0) * preprocess.SCALE + preprocess.MEAN).round().astype(np.uint8)
        name = photo.stem + ".png"
        Image.fromarray(crop, "RGB").save(args.out / name, optimize=True)
        exact = (crop.astype(np.float32) - preprocess.MEAN) / preprocess.SCALE
        (pooled,) = session.run(None, {"image": exact.transpose(2, 0, 1)[np.newaxis].copy()})
        features[name] = [round(float(v), 6) for v in pooled[0]]
    record = {
        "backbone": str(BACKBONE.relative_to(MODELS.parent)),
        "backbone_sha256": hashlib.sha256(BACKBONE.read_bytes()).hexdigest(),
        "onnxruntime": ort.__version__,
        "features": features,
    }
    (args.out / "features.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {len(features)} crops and features.json to {args.out}")


if __name__ == "__main__":
    main()
