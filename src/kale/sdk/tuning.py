"""Search spaces for ``pipeline.tune(...)``: ``Float``, ``Int`` and ``Choice``.

```python
from kale.sdk.tuning import Choice, Float, Int

study = train.tune(parameters={"lr": Float(1e-4, 1e-1, log=True), "depth": Int(2, 10),
                               "kernel": Choice(["rbf", "linear"])},
                   objective="accuracy", goal="maximize", algorithm="tpe", max_trials=30)
```

Light on purpose, as ``kale.sdk`` is: Optuna is imported by ``tune()``, when a study runs.
"""

from __future__ import annotations

from kale.tuning.space import Choice, Float, Int, TuningError

__all__ = ["Choice", "Float", "Int", "TuningError"]
