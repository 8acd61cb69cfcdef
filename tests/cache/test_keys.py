"""Cache keys: what is in them and what is not."""

from __future__ import annotations

import itertools
import textwrap

import pytest

from kale.cache import CodeHashes, KeyBuilder, Packages, stored_identity, varying_macros
from kale.loader import load_script

_names = itertools.count()

SCRIPT = '''
import numpy as np
from kale.sdk import pipeline, step

SCALE = 2

@step
def make(n):
    return [i * SCALE for i in range(n)]

@step(timeout=5, retry_count=1, labels={"team": "a"})
def use(xs):
    from helpers import total
    return total(xs) + float(np.pi)

@pipeline
def flow(n=3):
    xs = make(n)
    use(xs)
'''


def graph_of(tmp_path, text=SCRIPT, helpers="def total(xs):\n    return sum(xs)\n"):
    folder = tmp_path / f"p{next(_names)}"  # a fresh folder: a new module, the same layout
    folder.mkdir()
    (folder / "helpers.py").write_text(helpers)
    path = folder / "flow.py"
    path.write_text(textwrap.dedent(text))
    module = load_script(str(path))
    return module.flow.graph


def parts(graph, step):
    return KeyBuilder(graph).describe_step(graph.step(step))


def key(graph, step, inputs=None):
    return KeyBuilder(graph).key(graph.step(step), inputs or {"n": ("parameter", 3)})


def test_the_key_holds_code_context_modules_packages_and_versions(tmp_path):
    graph = graph_of(tmp_path)
    described = parts(graph, "use")
    assert described["function"] == "use" and described["file"] == "flow.py"
    assert described["code"].startswith("ast:")
    assert [name for name, _ in described["context"]] == ["flow.py"]  # `import numpy as np`
    assert [name for name, _ in described["project"]] == ["helpers.py"]
    assert [top for top, _ in described["packages"]] == ["numpy"]
    import numpy

    assert described["packages"][0][1] == f"numpy=={numpy.__version__}"
    assert described["python"][1].count(".") == 2 and described["format"] == 1
    # timeout, retries and labels are not in the key; limits are
    assert described["options"] == {"limits": []}


def test_the_same_project_elsewhere_has_the_same_keys(tmp_path):
    assert key(graph_of(tmp_path), "make") == key(graph_of(tmp_path), "make")


@pytest.mark.parametrize(("old", "new", "changed"), [
    ("return [i * SCALE for i in range(n)]", "return [i * SCALE + 1 for i in range(n)]",
     {"make"}),
    ("SCALE = 2", "SCALE = 3", {"make"}),
    ("import numpy as np", "import numpy as np\nimport json", set()),  # json: used by none
    ("@step(timeout=5, retry_count=1, labels={\"team\": \"a\"})", "@step", set()),
    ("@step(timeout=5,", "@step(limits={\"cpu\": \"2\"}, timeout=5,", {"use"}),
    ("    return [i * SCALE for i in range(n)]",
     "    # a comment\n    return [i * SCALE\n            for i in range(n)]  # formatting", set()),
])
def test_a_change_changes_the_keys_of_the_steps_it_reaches(tmp_path, old, new, changed):
    before = graph_of(tmp_path)
    assert old in SCRIPT
    after = graph_of(tmp_path, SCRIPT.replace(old, new))
    inputs = {"make": {"n": ("parameter", 3)},
              "use": {"xs": ("stored", {"hash": "xxh3:1", "backend": "json", "type": "list",
                                        "path": "/x"})}}
    differ = {name for name in ("make", "use")
              if KeyBuilder(before).key(before.step(name), inputs[name]) !=
              KeyBuilder(after).key(after.step(name), inputs[name])}
    assert differ == changed


def test_a_project_module_is_keyed_by_its_code(tmp_path):
    xs = {"xs": ("stored", {"hash": "xxh3:1", "backend": "json", "type": "list"})}
    base = graph_of(tmp_path)
    commented = graph_of(tmp_path, helpers="def total(xs):  # the sum\n\n    return sum(xs)\n")
    changed = graph_of(tmp_path, helpers="def total(xs):\n    return sum(xs) + 1\n")
    assert key(base, "use", xs) == key(commented, "use", xs) != key(changed, "use", xs)
    assert key(base, "make") == key(changed, "make")  # make imports no helpers


def test_inputs_by_content(tmp_path):
    graph = graph_of(tmp_path)
    step = graph.step("use")
    builder = KeyBuilder(graph)

    def stored(**meta):
        return {"xs": ("stored", {"hash": "xxh3:1", "backend": "json", "type": "list",
                                  "path": "/run-1/x.json", "size": 3, **meta})}

    same = builder.key(step, stored())
    # where the value is, how big, which library version wrote it: not the value
    assert builder.key(step, stored(path="/run-2/x.json", library_version="9")) == same
    assert builder.key(step, stored(original="/tmp/made-here")) == same
    assert builder.key(step, stored(hash="xxh3:2")) != same
    assert builder.key(step, stored(backend="pickle")) != same
    # an input without a content hash has no key: the task is not cached
    assert builder.key(step, {"xs": ("stored", {"backend": "json", "path": "/x"})}) is None
    # parameters and constants keep their types; collected values keep their order
    make = graph.step("make")
    keys = {builder.key(make, {"n": ("parameter", value)}) for value in (1, 1.0, True, "1")}
    assert len(keys) == 4
    assert builder.key(make, {"n": ("constant", (1, 2))}) != \
        builder.key(make, {"n": ("constant", [1, 2])})
    first, second = (("stored", {"hash": f"xxh3:{i}", "backend": "json", "type": "int"})
                     for i in (1, 2))
    assert builder.key(step, {"xs": ("collected", [first, second])}) != \
        builder.key(step, {"xs": ("collected", [second, first])})


def test_loop_items_by_value_or_by_position(tmp_path):
    graph = graph_of(tmp_path)
    step = graph.step("make")
    builder = KeyBuilder(graph)
    whole = ("stored", {"hash": "xxh3:1", "backend": "npy", "type": "numpy.ndarray"})
    other = ("stored", {"hash": "xxh3:2", "backend": "npy", "type": "numpy.ndarray"})
    # an item carried by value does not depend on the rest of the list...
    assert builder.key(step, {"n": ("item", ('{"value":3}', whole))}) == \
        builder.key(step, {"n": ("item", ('{"value":3}', other))})
    # ...one carried by position is read from it
    assert builder.key(step, {"n": ("item", ('{"index": 0}', whole))}) != \
        builder.key(step, {"n": ("item", ('{"index": 0}', other))})


def test_identity_of_a_stored_value_ignores_where_it_is():
    assert stored_identity({"path": "/a", "hash": "h", "backend": "json", "type": "int",
                            "size": 1, "fallback": "x"}) == \
        {"backend": "json", "hash": "h", "type": "int"}


def test_code_hashes_are_kept_for_the_next_run(tmp_path):
    hashes = CodeHashes(tmp_path)
    first = hashes.of("def f():\n    return 1\n")
    assert hashes.of("def f():  # one\n    return (1)\n") == first
    assert hashes.of("def f(:") .startswith("text:")  # does not parse: keyed by its text
    hashes.save()
    again = CodeHashes(tmp_path)
    again.of("x = 1")
    assert len(again.known) == 4  # three from the file, one new


def test_packages_by_distribution_or_file(tmp_path, monkeypatch):
    packages = Packages()
    import numpy

    assert packages.of("numpy") == f"numpy=={numpy.__version__}"
    assert packages.of("no_such_module_here") == "missing"
    (tmp_path / "loose.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert packages.of("loose").startswith("file:")


def test_macros_that_change_every_run():
    assert varying_macros("run-[[RunUUID]]-[[Index]]") == ["[[RunUUID]]"]
    assert varying_macros("[[CurrentTime.2006]]") == ["[[CurrentTime.2006]]"]
    assert varying_macros("plain") == varying_macros(3) == []
