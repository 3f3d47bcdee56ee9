"""The five steps of a small ML pipeline, as functions saved in den.

``preprocess >> split >> train >> predict >> accuracy``: each runs on the den
cluster, and the data between them stays there as :class:`den.Ref` handles
(``fn.remote(...)``); only the final accuracy, a float, comes back.

A logistic regression on a synthetic two-class dataset, in plain Python, keeps
the example free of downloads and installs; put your own loading and model
(numpy, pandas, torch: give the functions an env with them) in the same shape.
"""

from __future__ import annotations

import math
import operator
import random
import sys
from typing import Any


def preprocess(rows: int = 2000, features: int = 6, seed: int = 0) -> dict[str, Any]:
    """Load (here: make) the raw data and standardize its features."""
    rng = random.Random(seed)
    y = [rng.randrange(2) for _ in range(rows)]
    x = [[(1.0 if label else -1.0) * (0.2 + 0.8 * j / max(features - 1, 1))
          + rng.gauss(0.0, 1.5) + 5.0 for j in range(features)] for label in y]
    for j in range(features):
        column = [row[j] for row in x]
        mean = sum(column) / rows
        std = math.sqrt(sum((v - mean) ** 2 for v in column) / rows) or 1.0
        for row in x:
            row[j] = (row[j] - mean) / std
    print(f"preprocess: {rows} rows, {features} features")
    return {"x": x, "y": y}


def split(data: dict[str, Any], test_fraction: float = 0.25, seed: int = 0) -> dict[str, Any]:
    """Shuffle the rows and split them into a training and a test set."""
    order = list(range(len(data["y"])))
    random.Random(seed).shuffle(order)
    cut = int(len(order) * (1 - test_fraction))
    train_rows, test_rows = order[:cut], order[cut:]
    print(f"split: {len(train_rows)} to train, {len(test_rows)} to test")
    return {"x_train": [data["x"][i] for i in train_rows],
            "y_train": [data["y"][i] for i in train_rows],
            "x_test": [data["x"][i] for i in test_rows],
            "y_test": [data["y"][i] for i in test_rows]}


def _score(w: list[float], b: float, row: list[float]) -> float:
    return sum(map(operator.mul, w, row)) + b


def train(sets: dict[str, Any], epochs: int = 50, rate: float = 0.5) -> dict[str, Any]:
    """Fit a logistic regression by gradient descent; the model is its weights."""
    x, y = sets["x_train"], sets["y_train"]
    w, b = [0.0] * len(x[0]), 0.0
    for _ in range(epochs):
        errors = [1 / (1 + math.exp(-_score(w, b, x[i]))) - y[i] for i in range(len(y))]
        w = [wj - rate * sum(errors[i] * x[i][j] for i in range(len(y))) / len(y)
             for j, wj in enumerate(w)]
        b -= rate * sum(errors) / len(y)
    # A note for whoever reads the task log: stderr shows there as a warning.
    print(f"train: stopped after {epochs} epochs (no early stopping)", file=sys.stderr)
    return {"w": w, "b": b}


def predict(model: dict[str, Any], sets: dict[str, Any]) -> list[int]:
    """The model's class for each test row."""
    return [int(_score(model["w"], model["b"], row) > 0) for row in sets["x_test"]]


def accuracy(predictions: list[int], sets: dict[str, Any]) -> float:
    """The share of test rows predicted right."""
    right = sum(map(operator.eq, predictions, sets["y_test"]))
    return right / len(predictions)


STEPS = (preprocess, split, train, predict, accuracy)
