#!/usr/bin/env python3
"""onnxruntime's time per inference on pinsight's backbones, 1 thread, CPU, for holding
pinsight's own figures (examples/engines.rs, `pinsight bench`) against in the same run.

    venv/bin/python models/ort_timing.py [--runs 50] [PHOTO]

Prints model-ready time (session creation) and the median and 99th percentile of --runs
inferences (after one warm-up) for backbone-int8.onnx and backbone-float.onnx.
"""

import argparse
import statistics
import time
from pathlib import Path

import onnxruntime as ort

import preprocess

MODELS = Path(__file__).resolve().parent
BACKBONES = [MODELS / "efficientnet-lite0" / name for name in ("backbone-int8.onnx", "backbone-float.onnx")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("photo", type=Path, nargs="?", default=MODELS.parent / "samples" / "coffee.png")
    args = parser.parse_args()
    tensor = preprocess.tensor_for(args.photo)
    for path in BACKBONES:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        started = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ready = (time.perf_counter() - started) * 1e3
        session.run(None, {"image": tensor})
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            session.run(None, {"image": tensor})
            times.append((time.perf_counter() - started) * 1e3)
        times.sort()
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        print(
            f"onnxruntime {ort.__version__} {path.name}: ready {ready:.0f} ms, "
            f"median {statistics.median(times):.2f} ms, p99 {p99:.2f} ms of {args.runs} (1 thread)"
        )


if __name__ == "__main__":
    main()
