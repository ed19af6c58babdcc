#!/usr/bin/env python3
"""The reference a pinsight head is held against: scikit-learn logistic regression on the float
backbone's features, its regularisation chosen by cross-validation.

    venv/bin/python models/reference_head.py ../shared/data/clothing

DATA_DIR holds train/<class>/*, and test/<class>/* (validation/ is folded into the training data
for the cross-validation, which needs no separate split). Features come from
efficientnet-lite0/backbone-float.onnx in onnxruntime with this folder's preprocessing
(preprocess.py). Prints the chosen C and the test accuracy.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import preprocess

MODELS = Path(__file__).resolve().parent
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def photos(split_dir: Path, classes: list[str]):
    for index, name in enumerate(classes):
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield path, index


def features(session: ort.InferenceSession, items) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for path, label in items:
        (pooled,) = session.run(None, {"image": preprocess.tensor_for(path)})
        rows.append(pooled[0])
        labels.append(label)
    return np.stack(rows), np.array(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--backbone", type=Path, default=MODELS / "efficientnet-lite0" / "backbone-float.onnx")
    args = parser.parse_args()

    classes = sorted(p.name for p in (args.data / "train").iterdir() if p.is_dir())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(args.backbone), options, providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    train_x, train_y = features(session, photos(args.data / "train", classes))
    if (args.data / "validation").is_dir():
        val_x, val_y = features(session, photos(args.data / "validation", classes))
        train_x, train_y = np.concatenate([train_x, val_x]), np.concatenate([train_y, val_y])
    test_x, test_y = features(session, photos(args.data / "test", classes))
    extracted = time.perf_counter() - started

    started = time.perf_counter()
    model = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=5, max_iter=2000, random_state=0),
    )
    model.fit(train_x, train_y)
    fitted = time.perf_counter() - started
    accuracy = float((model.predict(test_x) == test_y).mean())
    chosen = model[-1].C_[0]
    print(f"classes: {', '.join(classes)}")
    print(f"photos: {len(train_y)} train+validation, {len(test_y)} test")
    print(f"features {extracted:.1f} s, fit {fitted:.1f} s; C chosen by 5-fold CV: {chosen:.4g}")
    print(f"reference test accuracy: {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
