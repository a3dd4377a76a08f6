"""The benchmark's two models, built the same way on both sides (same data, same seeds): a
logistic regression and a 100-tree random forest on 20 features.

    python bench/serving/models.py armillary OUT_DIR   (skops + ONNX + signature; our venv)
    python bench/serving/models.py mlflow OUT_DIR      (mlflow.sklearn models; the mlflow venv)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

FEATURES = [f"f{i}" for i in range(20)]


def data() -> tuple[object, object]:
    return make_classification(
        n_samples=5_000, n_features=20, n_informative=12, n_classes=2, random_state=0
    )


def fitted() -> dict[str, object]:
    x, y = data()
    return {
        "logreg": LogisticRegression(max_iter=1_000).fit(x, y),
        "forest": RandomForestClassifier(n_estimators=100, random_state=0).fit(x, y),
    }


def rows(n: int) -> list[list[float]]:
    x, _ = data()
    return [[float(v) for v in row] for row in x[:n]]  # type: ignore[index]


def armillary(out: Path) -> None:
    import numpy as np
    import skops.io as sio
    from skl2onnx import to_onnx

    x, _ = data()
    signature = {
        "inputs": [{"name": f, "dtype": "Float64"} for f in FEATURES],
        "target": {"name": "label", "dtype": "Int64"},
        "problem": "classification",
        "classes": [0, 1],
    }
    for name, model in fitted().items():
        sio.dump(model, out / f"{name}.skops")
        onnx = to_onnx(
            model, np.asarray(x[:1], dtype=np.float32), options={id(model): {"zipmap": False}}
        )
        (out / f"{name}.onnx").write_bytes(onnx.SerializeToString())
    (out / "signature.json").write_text(json.dumps(signature))


def mlflow(out: Path) -> None:
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    x, _ = data()
    frame = pd.DataFrame(x, columns=FEATURES)
    for name, model in fitted().items():
        signature = infer_signature(frame, model.predict(frame.values))  # type: ignore[attr-defined]
        # MLflow 3 stores scikit-learn models with skops too, and asks for the tree type.
        mlflow.sklearn.save_model(
            model,
            str(out / name),
            signature=signature,
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )


if __name__ == "__main__":
    side, directory = sys.argv[1], Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    {"armillary": armillary, "mlflow": mlflow}[side](directory)
