"""Rules of the package's own structure: what its modules may import from one another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kale

PACKAGE = Path(kale.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kale_imports(path: Path):
    """(line, imported module, imported names) of every import of a kale module in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "kale":
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "kale":
                    yield node.lineno, alias.name, []


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_a_private_module_is_open_to_its_own_package_only():
    assert own_package(PACKAGE / "cache" / "__init__.py") == "kale.cache"
    assert own_package(PACKAGE / "cache" / "_store.py") == "kale.cache"
    assert own_package(PACKAGE / "graph" / "parser.py") == "kale.graph"


def test_the_scan_sees_the_packages_modules():
    names = {module_name(path) for path in SOURCES}
    assert {"kale.sdk", "kale.graph.parser", "kale.marshal.codec"} <= names


def own_package(path: Path) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to it)."""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def test_no_module_imports_a_private_name_of_another():
    # A package's private modules are for the package itself (its public face and its other
    # modules import them, as httpx does); from anywhere else, a private name is off limits.
    found = []
    for path in SOURCES:
        for line, module, names in kale_imports(path):
            hidden = [name for name in names if private(name)]
            parent, _, last = module.rpartition(".")
            inside = private(last) and parent == own_package(path) and not any(
                private(part) for part in parent.split("."))
            if hidden or (any(private(part) for part in module.split(".")) and not inside):
                found.append(f"{path.relative_to(PACKAGE)}:{line}: from {module} import "
                             f"{', '.join(hidden or names)}")
    assert not found, "make these public (and document them) or keep them in one module:\n" \
        + "\n".join(found)


def test_the_graph_package_never_imports_the_sdk():
    found = [f"{path.relative_to(PACKAGE)}:{line}: {module}"
             for path in sorted((PACKAGE / "graph").rglob("*.py"))
             for line, module, _ in kale_imports(path)
             if module == "kale.sdk" or module.startswith("kale.sdk.")]
    assert not found, "kale.graph must not import kale.sdk (use kale.definitions):\n" + \
        "\n".join(found)


def test_importing_the_graph_package_loads_no_sdk():
    code = "import sys, kale.graph; print('kale.sdk' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
