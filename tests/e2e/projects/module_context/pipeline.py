"""Written as Kale SDK users write scripts: libraries imported at the top, module-level helpers,
constants and classes used by steps, and the pipeline called without a __main__ guard."""

import json
import logging
import math as m
import os
from random import randint, seed

import numpy as np
from data import wrangle

from kale.sdk import pipeline, step

seed(1)  # setup: every step gets it
logging.basicConfig(format="LOG %(name)s %(message)s", level=logging.INFO)
logger = logging.getLogger(__name__)
np.random.seed(0)

SETTINGS = {"size": 5}
SETTINGS["scale"] = 2.0
print("module level runs in every step that needs it? no: this print is left out")


class Summary:
    def __init__(self, numbers):
        self.numbers = list(numbers)

    def total(self):
        return m.fsum(self.numbers)


def scale(values):
    return [v * SETTINGS["scale"] for v in values]


def generate(size):
    return scale(np.random.rand(size).round(3).tolist())


@step
def make():
    values = generate(SETTINGS["size"])
    print("made", len(values), "values, dice", randint(1, 6))
    return Summary(values)


@step
def inspect_summary(summary):
    assert isinstance(summary, Summary), type(summary)
    print("TOTAL", round(summary.total(), 3), "PID-OK", os.getpid() > 0)
    return summary.numbers


@step
def report(stats):
    logger.info("reporting %d numbers", len(stats))
    print("STATS", json.dumps(stats, sort_keys=True))


@pipeline(name="module-context", experiment="kale-tests")
def flow():
    summary = make()
    numbers = inspect_summary(summary)
    stats = wrangle(numbers)
    report(stats)


run = flow()
print("CALLER", type(run).__name__)
