"""Data for the example: a deterministic stand-in for a remote service, a splitter, a validator."""

import json
import random


def fetch_data(timestamp, size=400):
    """Two noisy clusters of labelled points; the timestamp seeds them, like a daily snapshot."""
    rng = random.Random(str(timestamp))
    rows = []
    for _ in range(size):
        label = rng.random() < 0.5
        center = (1.5, 1.0) if label else (-1.0, -1.5)
        rows.append((rng.gauss(center[0], 1.0), rng.gauss(center[1], 1.0), int(label)))
    return rows


def data_processor(rows):
    """Split rows into training and validation sets, as settings.json says."""
    with open("settings.json") as handle:
        fraction = json.load(handle)["validation_fraction"]
    cut = int(len(rows) * (1 - fraction))
    return rows[:cut], rows[cut:]


def data_validator(train_rows, validate_rows):
    """Raise if the data cannot train a classifier; return it unchanged otherwise."""
    for name, rows in (("train", train_rows), ("validate", validate_rows)):
        labels = {row[2] for row in rows}
        if labels != {0, 1}:
            raise ValueError(f"the {name} set needs both classes, it has {sorted(labels)}")
    return train_rows, validate_rows
