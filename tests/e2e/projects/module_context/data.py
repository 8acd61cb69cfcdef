"""A project module with module-level imports and helpers, and a step of its own."""

import statistics as st
from collections import Counter

from kale.sdk import step

ROUNDING = 3


def spread(values):
    return round(st.pstdev(values), ROUNDING)


@step
def wrangle(values):
    counts = Counter(v > 0.5 for v in values)
    return {"mean": round(st.mean(values), ROUNDING), "spread": spread(values),
            "high": counts[True]}
