"""onnxruntime on pinsight's model files, measured the way `pinsight bench --model-only` measures tract.

One backbone with a head, as pinsight runs them: the backbone and the head are two sessions run one
after the other, then a softmax. `--threads` intra-op threads (default 1; inter-op 1, sequential execution), the
CPU execution provider, onnxruntime's default graph optimisations. The input is a photo through
preprocess.py (the same 1 x 3 x 224 x 224 tensor pinsight makes).

Prints one JSON line with the fields pinsight prints (src/bench.rs, ModelBench):
- ready_ms: from the start of creating the sessions to the first result out (load_ms + first_ms);
- p50_ms, p99_ms: of the RUNS inferences after the first (nearest rank, as pinsight);
- peak_rss_kib: VmHWM of this process, which includes Python, numpy and onnxruntime's library;
  rss_before_load_kib is the peak before the sessions were created, so the difference is the
  model's.

scripts/bench-models runs this once per backbone, each in a process of its own, beside pinsight.

    python models/bench_ort.py --backbone models/efficientnet-lite0/backbone-int8.onnx --runs 100
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import preprocess  # noqa: E402


def peak_rss_kib():
    """This process's peak resident set size so far (VmHWM), KiB, or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def softmax(logits):
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def quantile(sorted_samples, q):
    """Nearest rank, as src/bench.rs Timing::of."""
    index = int(round((len(sorted_samples) - 1) * q))
    return sorted_samples[index]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", required=True, type=Path)
    parser.add_argument("--head", default=Path("models/imagenet"), type=Path)
    parser.add_argument("--runs", default=30, type=int, help="timed runs after the first")
    parser.add_argument("--photo", default=Path("samples/rocket.jpg"), type=Path)
    parser.add_argument("--threads", default=1, type=int, help="intra-op threads")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    image = preprocess.tensor_for(args.photo)
    labels = (args.head / "labels.txt").read_text().splitlines()
    rss_before_load = peak_rss_kib()

    started = time.perf_counter()
    backbone = session(args.backbone, args.threads)
    head = session(args.head / "head.onnx", args.threads)
    image_name = backbone.get_inputs()[0].name
    features_name = head.get_inputs()[0].name

    def infer():
        (features,) = backbone.run(None, {image_name: image})
        (logits,) = head.run(None, {features_name: features})
        return softmax(logits[0])

    loaded = time.perf_counter()
    first = infer()
    ready = time.perf_counter()
    samples = []
    for _ in range(args.runs):
        start = time.perf_counter()
        infer()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    top1 = int(np.argmax(first))
    result = {
        "engine": f"onnxruntime {ort.__version__}",
        "backbone": str(args.backbone),
        "head": str(args.head),
        "threads": args.threads,
        "ready_ms": (ready - started) * 1e3,
        "load_ms": (loaded - started) * 1e3,
        "first_ms": (ready - loaded) * 1e3,
        "runs": args.runs,
        "inferences": args.runs + 1,
        "p50_ms": quantile(samples, 0.5),
        "p99_ms": quantile(samples, 0.99),
        "peak_rss_kib": peak_rss_kib(),
        "rss_before_load_kib": rss_before_load,
        "top1_index": top1,
        "top1_label": labels[top1] if top1 < len(labels) else "",
        "top1_probability": float(first[top1]),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
