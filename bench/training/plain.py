"""The plain-Python side of the training benchmark: what a data scientist's script does.

    python bench/training/plain.py DATA.parquet OUT_DIR --trees N --seed S

Reads the Parquet file, holds out 20% (stratified), fits the same pipeline the platform builds
(median imputation, standard scaling, a random forest), computes accuracy/F1 on the hold-out
rows and saves the model with skops. Prints the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--trees", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    frame = pl.read_parquet(args.data)
    y = frame["target"].to_numpy()
    x = frame.drop("target").to_numpy().astype(np.float64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=args.seed
    )
    model = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("model", RandomForestClassifier(n_estimators=args.trees, random_state=args.seed)),
        ]
    )
    model.fit(x_train, y_train)
    predicted = model.predict(x_test)
    args.out.mkdir(parents=True, exist_ok=True)
    sio.dump(model, args.out / "model.skops")
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1": float(f1_score(y_test, predicted, average="macro")),
    }
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
