"""What travels to Kubeflow, run on demand: ``python benchmarks/bench_bundle.py``.

The bytes of Kale's runtime in every project bundle (the bundle of an empty project), what that
leaves of the inline limit (``kale.kfp.store.INLINE_LIMIT``) to the project, and the bundle and
whole package (``--kfp --dry-run``) of each example. The Kale measured is the one Python imports
(``PYTHONPATH=/other/checkout/src`` measures another). Sizes are exact: one run is enough.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

EXAMPLES = ("diamond", "ml_experiment", "sweep")


def main() -> None:
    import kale
    from kale.kfp.bundle import build_bundle
    from kale.kfp.store import INLINE_LIMIT

    examples = Path(__file__).resolve().parent.parent / "examples"
    rows = [("what", "bytes", "")]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "empty").mkdir()
        runtime = build_bundle(folder / "empty")
        with tarfile.open(fileobj=io.BytesIO(runtime.data)) as archive:
            members = archive.getmembers()
        rows.append(("Kale's runtime in a bundle (compressed)", f"{runtime.size:,}",
                     f"{len(members)} files, {sum(m.size for m in members):,} bytes unpacked"))
        rows.append(("left to the project under the inline limit",
                     f"{INLINE_LIMIT - runtime.size:,}", f"of {INLINE_LIMIT:,}"))
        for example in EXAMPLES:
            project = examples / example
            package = folder / f"{example}.yaml"
            result = subprocess.run([sys.executable, "pipeline.py", "--kfp", "--dry-run",
                                     "--output", str(package)], cwd=project,
                                    capture_output=True, text=True)
            size = f"{package.stat().st_size:,}" if result.returncode == 0 else "failed"
            rows.append((f"{example}: bundle", f"{build_bundle(project).size:,}", ""))
            rows.append((f"{example}: whole package", size, ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for index, row in enumerate(rows):
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}")
        if index == 0:
            print(f"{'-' * widths[0]}  {'-' * widths[1]}")
    print(f"\nkale from {Path(kale.__file__).parent}; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
