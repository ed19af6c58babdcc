#!/usr/bin/env python3
"""ImageNet top-1/top-5 of the float backbone, the int8 backbone, and what pinsight runs.

    venv/bin/python models/accuracy.py --imagenet ../shared/data/imagenet-val \
        --pinsight target/release/pinsight

Measured on the photos of the ImageNet folder that were not used to calibrate the int8 model
(efficientnet-lite0/calibration.txt). The float and int8 rows run in onnxruntime (1 thread) with
this folder's preprocessing; the pinsight rows run `pinsight classify --json`, which decodes,
resizes and runs the model its own way, so they measure the whole program. Prints a table and
exits non-zero when pinsight's int8 top-1 is more than --max-drop points below float.

`--kernels` makes the pinsight rows one int8 row for each named kernel set (`PINSIGHT_KERNELS`),
and `--runner` runs an ARM build under qemu-user, so each set can be checked on one machine:

    venv/bin/python models/accuracy.py --count 300 --kernels neon,neon-dotprod \
        --runner "qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu" \
        --pinsight target/aarch64-unknown-linux-gnu/release/pinsight
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

import preprocess

MODELS = Path(__file__).resolve().parent
BACKBONE_DIR = MODELS / "efficientnet-lite0"
HEAD = MODELS / "imagenet" / "head.onnx"


def held_out(imagenet: Path) -> list[tuple[str, int]]:
    calibration = set((BACKBONE_DIR / "calibration.txt").read_text().split())
    pairs = [line.split() for line in (imagenet / "labels.txt").read_text().splitlines() if line]
    return sorted((name, int(label)) for name, label in pairs if name not in calibration)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnxruntime_top5(backbone: Path, photos: list[Path]) -> list[list[int]]:
    features, head = session(backbone), session(HEAD)
    ranked = []
    for photo in photos:
        (pooled,) = features.run(None, {"image": preprocess.tensor_for(photo)})
        (logits,) = head.run(None, {"features": pooled})
        ranked.append(list(np.argsort(-logits[0])[:5]))
    return ranked


def pinsight_top5(
    command: list[str], backbone: Path, photos: list[Path], labels: list[str], kernels: str | None = None
) -> list[list[int]]:
    index = {label: i for i, label in enumerate(labels)}
    command = [*command, "classify", "--json", "--top", "5", "--backbone", str(backbone), *map(str, photos)]
    env = dict(os.environ, PINSIGHT_KERNELS=kernels) if kernels else None
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    by_path = {}
    for line in output.splitlines():
        result = json.loads(line)
        by_path[result["path"]] = [index[guess["label"]] for guess in result["top"]]
    return [by_path[str(photo)] for photo in photos]


def score(ranked: list[list[int]], truth: list[int]) -> tuple[float, float]:
    top1 = sum(r[0] == t for r, t in zip(ranked, truth)) / len(truth)
    top5 = sum(t in r[:5] for r, t in zip(ranked, truth)) / len(truth)
    return 100 * top1, 100 * top5


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imagenet", type=Path, default=MODELS.parent.parent / "shared/data/imagenet-val")
    parser.add_argument("--pinsight", type=Path, help="the pinsight binary; without it, onnxruntime rows only")
    parser.add_argument("--max-drop", type=float, default=1.0, help="allowed int8 top-1 loss, points")
    parser.add_argument("--kernels", default="", help="comma-separated kernel sets: a pinsight int8 row each, and no other")
    parser.add_argument("--runner", default="", help="run pinsight through this (qemu-user for an ARM build)")
    parser.add_argument("--count", type=int, help="the first COUNT held-out photos only")
    args = parser.parse_args()

    pairs = held_out(args.imagenet)[: args.count]
    photos = [args.imagenet / "images" / name for name, _ in pairs]
    truth = [label for _, label in pairs]
    labels = (MODELS / "imagenet" / "labels.txt").read_text().splitlines()
    float_path, int8_path = BACKBONE_DIR / "backbone-float.onnx", BACKBONE_DIR / "backbone-int8.onnx"

    rows = [
        ("onnxruntime float", score(onnxruntime_top5(float_path, photos), truth)),
        ("onnxruntime int8", score(onnxruntime_top5(int8_path, photos), truth)),
    ]
    if args.pinsight:
        command = [*shlex.split(args.runner), str(args.pinsight)]
        kernel_sets = [k for k in args.kernels.split(",") if k]
        if not kernel_sets:
            rows.append(("pinsight float", score(pinsight_top5(command, float_path, photos, labels), truth)))
        for kernels in kernel_sets or [None]:
            ranked = pinsight_top5(command, int8_path, photos, labels, kernels)
            rows.append((f"pinsight int8 {kernels or ''}".strip(), score(ranked, truth)))

    print(f"{len(photos)} held-out ImageNet validation photos")
    print(f"{'model':<26} {'top-1 %':>8} {'top-5 %':>8}")
    for name, (top1, top5) in rows:
        print(f"{name:<26} {top1:8.2f} {top5:8.2f}")
    for name, (top1, _) in rows[2:]:
        if name.startswith("pinsight int8"):
            print(f"{name}: top-1 {top1 - rows[1][1][0]:+.2f} points against onnxruntime int8")
    reference = rows[0][1][0]
    drop = reference - rows[-1][1][0]
    print(f"int8 top-1 drop against float ({rows[-1][0]}): {drop:.2f} points (allowed {args.max_drop})")
    return 0 if drop <= args.max_drop else 1


if __name__ == "__main__":
    sys.exit(main())
