"""``kale.sdk.tuning`` is imported by scripts at their top, with ``kale.sdk``: it loads no
Optuna, kfp, Katib models, numpy or pandas."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_search_space_loads_nothing_heavy():
    code = ("import sys, kale.sdk, kale.sdk.tuning; print(sorted(m for m in ('optuna', 'kfp', "
            "'numpy', 'pandas', 'kubeflow_katib_api', 'kubernetes', 'sqlalchemy') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
