"""The pipeline body's control flow compiled for Kubeflow (issue 11), run under kfp.local.

Each pipeline prints what its steps receive (``VALUE label repr(value)``); the tests compare
those lines with what the same body gives in Python, for values that take each branch. The
packages run from a directory of their own, as in test_compiler.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.kfp.test_compiler import compile_script, run_compile, run_under_kfp_local

# kfp.local runs the steps here, where kfp and their packages are: no pip install per task.
pytestmark = pytest.mark.usefixtures("prepared_image")


pytest.importorskip("kfp")


def values(output: str) -> list[str]:
    """The VALUE lines a run printed (kfp.local indents a task's log), in the order printed."""
    return [match.group(1).rstrip() for match in re.finditer(r"VALUE (.*)", output)]


def run_with(package: Path, folder: Path, arguments: dict, raise_on_error: bool = True) -> str:
    """Run a package under kfp.local with pipeline arguments, from a folder of its own."""
    code = ("from kfp import local, components\n"
            f"local.init(runner=local.SubprocessRunner(use_venv=False), "
            f"pipeline_root={str(folder / 'root')!r}, raise_on_error={raise_on_error})\n"
            f"components.load_component_from_file({str(package)!r})(**{arguments!r})\n")
    elsewhere = folder / "kfp-local-cwd"
    elsewhere.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=elsewhere, timeout=600)
    output = result.stdout + result.stderr
    if raise_on_error:
        assert result.returncode == 0, output[-3000:]
    return output


BRANCHES = '''\
from kale.sdk import pipeline, step


@step
def number(n):
    return n


@step
def show(label, value):
    print('VALUE', label, repr(value))


@step
def pick(tag):
    return (tag, 1)


@pipeline(name='branches')
def p(n=7, flag=True, word='a'):
    x = number(n)
    if x > 5:
        show('result>5', x)
    elif x == 5:
        show('result==5', x)
    else:
        show('result<5', x)
    if 3 < n:
        show('constant-left', n)
    if flag:
        show('flag', flag)
    if word == 'a':
        y = pick('A')
    elif word == 'b':
        y = pick('B')
    else:
        y = pick('other')
    show('one-of', y)
'''


def expected_branches(n: int, flag: bool, word: str) -> list[str]:
    """What the body gives in Python."""
    seen = []
    seen.append(f"result>5 {n}" if n > 5 else f"result==5 {n}" if n == 5 else
                f"result<5 {n}")
    if n > 3:
        seen.append(f"constant-left {n}")
    if flag:
        seen.append("flag True")
    seen.append(f"one-of {({'a': 'A', 'b': 'B'}.get(word, 'other'), 1)!r}")
    return sorted(seen)


@pytest.fixture(scope="module")
def branches(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("branches")
    # As prepared_image does for a test: this package is run under kfp.local three times.
    compiled = run_compile(folder, BRANCHES, "b.yaml", KALE_INSTALL="0",
                           KALE_IMAGE="kale-tests:prepared")
    assert compiled.returncode == 0, compiled.stderr
    return folder / "b.yaml", compiled


def test_conditions_compile_to_tasks_and_condition_groups(branches):
    package, compiled = branches
    assert "kale: compiled pipeline branches (10 steps, 4 conditions)" in \
        compiled.stdout + compiled.stderr
    spec = next(yaml.safe_load_all(package.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    # Each `if` chain is a task of its own, shown as its test, then its branches' groups.
    assert tasks["kale-condition-1"]["taskInfo"]["name"] == "if x > 5"
    assert tasks["kale-condition-2"]["taskInfo"]["name"] == "if 3 < n"
    conditions = [task["triggerPolicy"]["condition"] for component in spec["components"].values()
                  for task in component.get("dag", {}).get("tasks", {}).values()
                  if "triggerPolicy" in task]
    assert "int(inputs.parameter_values['pipelinechannel--kale-condition-1-Output']) == 0" \
        in conditions
    # The chain whose branches all bind `y` ends in an Else, as dsl.OneOf requires.
    assert any(condition.startswith("!(") and "kale-condition-4" in condition
               and "== 2" not in condition for condition in conditions)
    # The condition's code travels in the component, not as a file of the project.
    executor = spec["deploymentSpec"]["executors"]["exec-kale-condition-1"]
    assert "if x > 5: return 0" in " ".join(executor["container"]["command"])


@pytest.mark.slow
@pytest.mark.parametrize(("n", "flag", "word"), [(7, True, "a"), (5, False, "b"),
                                                  (1, True, "c")])
def test_each_branch_runs_as_in_python(branches, tmp_path, n, flag, word):
    package, _ = branches
    output = run_with(package, tmp_path, {"n": n, "flag": flag, "word": word})
    assert sorted(values(output)) == expected_branches(n, flag, word), output[-3000:]


LOOPS = '''\
import numpy as np

from kale.sdk import pipeline, step


@step
def listing(n):
    return list(range(n))


@step
def arrays():
    return [np.arange(3) * k for k in range(3)]


@step
def square(x):
    return x * x


@step
def pair(a, b):
    return (a, b)


@step
def label(name):
    return f'<{name}>'


@step
def show(label, value):
    print('VALUE', label, repr(value))


@pipeline(name='loops', loop_parallelism=2)
def p(n=4, rates=[3, 1, 2.5]):
    xs = listing(n)
    squares = [square(x) for x in xs]
    show('squares', squares)
    pairs = [pair(x, 'p') for x in xs]
    show('pairs', pairs)
    for r in rates:
        show('rate', r)
    doubled = [pair(r, r) for r in rates]
    show('by-rate', doubled)
    for word in ['a', 'b']:
        tag = label(word)
        inner = [pair(tag, k) for k in [1, 2]]
        show('nested', inner)
    arrs = arrays()
    for a in arrs:
        if sum(a) > 3:
            show('big', a)
        else:
            show('small', a)
'''


def expected_loops() -> list[str]:
    """What the body gives in Python (each loop's lines in any order)."""
    import numpy as np

    xs = list(range(4))
    rates = [3, 1, 2.5]
    seen = [f"squares {[x * x for x in xs]!r}", f"pairs {[(x, 'p') for x in xs]!r}",
            *(f"rate {r!r}" for r in rates), f"by-rate {[(r, r) for r in rates]!r}",
            *(f"nested {[(f'<{w}>', k) for k in [1, 2]]!r}" for w in ["a", "b"])]
    for a in [np.arange(3) * k for k in range(3)]:
        seen.append(f"{'big' if sum(a) > 3 else 'small'} {a!r}")
    return sorted(seen)


@pytest.mark.slow
def test_loops_and_collected_results_are_as_in_python(tmp_path):
    package = compile_script(tmp_path, LOOPS, "l.yaml")
    spec = next(yaml.safe_load_all(package.read_text()))
    loops = [task for component in [spec["root"], *spec["components"].values()]
             for task in component.get("dag", {}).get("tasks", {}).values()
             if "parameterIterator" in task]
    assert len(loops) == 7
    assert {task["iteratorPolicy"]["parallelismLimit"] for task in loops} == {2}
    output = run_under_kfp_local(package, tmp_path)
    # ints stay ints, tuples tuples, in item order; arrays travel by their position
    assert sorted(values(output)) == expected_loops(), output[-3000:]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="kfp.local 2.17 hands a step of an inner loop the "
                   "inner loop's item where it reads the item of an outer loop over a list "
                   "parameter or a step's output: task_spec_utils."
                   "create_parameter_loop_iteration_task_spec replaces every input of the "
                   "inner loop named `...-loop-item` (an outer loop over a literal list, whose "
                   "items kfp names `loop-item-param-N`, is not hit); Kubeflow's driver "
                   "passes each loop's own item")
def test_an_outer_loop_item_inside_an_inner_loop(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef show(label, value):\n    print('VALUE', label, repr(value))\n\n"
        "@pipeline(name='outer')\ndef p(names=['x', 'y']):\n"
        "    for a in names:\n        for b in [1]:\n            show(a, b)\n"), "o.yaml")
    output = run_under_kfp_local(package, tmp_path)
    assert sorted(values(output)) == ["x 1", "y 1"], output[-3000:]


@pytest.mark.slow
def test_a_failing_iteration_fails_its_task_and_skips_what_collects_the_loop(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef work(i):\n    if i == 1:\n        raise ValueError(f'bad item {i}')\n"
        "    print('VALUE done', i)\n    return i\n\n"
        "@step\ndef show(label, value):\n    print('VALUE', label, repr(value))\n\n"
        "@pipeline(name='failing-loop')\ndef p():\n"
        "    done = [work(i) for i in [0, 1, 2]]\n    show('collected', done)\n"
        "    show('independent', 1)\n"), "f.yaml")
    output = run_under_kfp_local(package, tmp_path, raise_on_error=False)
    # kfp.local runs every iteration; the collecting step does not run; the run fails.
    assert sorted(values(output)) == ["done 0", "done 2", "independent 1"], output[-3000:]
    assert "Kale: step `work` raised ValueError: bad item 1" in output
    assert "FAILURE" in output


def test_a_loop_over_a_parameter_with_no_item_to_type_by_is_refused(tmp_path):
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n@step\ndef s(x):\n    return x\n\n"
        "@pipeline(name='n')\ndef p(xs=[]):\n    for x in xs:\n        s(x)\n"))
    assert result.returncode == 1, result.stderr
    assert "the loop over pipeline parameter `xs` cannot be compiled: its default is empty" \
        in result.stderr
    assert "flow.py:9" in result.stderr and "Traceback" not in result.stderr


def test_display_names_and_the_summary_count_conditions_and_loops(tmp_path):
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n@step\ndef s(x):\n    return x\n\n"
        "@pipeline(name='shape')\ndef p(n=1):\n    if n > 1:\n        s(n)\n"
        "    if n > 1:\n        s(2)\n    for x in [1, 2]:\n        s(x)\n"), "s.yaml")
    assert result.returncode == 0, result.stderr
    assert "(3 steps, 2 conditions, 1 loop)" in result.stdout + result.stderr
    tasks = next(yaml.safe_load_all((tmp_path / "s.yaml").read_text()))["root"]["dag"]["tasks"]
    # Two chains with the same test: each task is shown by its step name.
    assert tasks["kale-condition-1"]["taskInfo"]["name"] == "condition-1"
    assert tasks["kale-condition-2"]["taskInfo"]["name"] == "condition-2"


COLLECTED_INSIDE = '''\
from kale.sdk import pipeline, step


@step
def listing():
    return [3, 1, 2]


@step
def square(x):
    return x * x


@step
def show(label, value):
    print('VALUE', label, repr(value))


@pipeline(name='collected-inside')
def p(t=2, rates=[1, 2]):
    xs = listing()
    squares = [square(x) for x in xs]
    if len(squares) > 2:
        show('in-if', squares)
    if t > 1:
        show('in-if-param', squares)
    for r in rates:
        show('in-for', squares)
    for x in xs:
        inner = [square(k) for k in rates]
        if x > 2:
            show('nested', inner)
'''


@pytest.mark.slow
def test_collected_results_used_inside_a_block_the_loop_is_not_in(tmp_path):
    # kfp 2.17 typed a dsl.Collected of artifacts that enters a nested If or ParallelFor as
    # a parameter: compiling failed with "TypeError: 'NoneType' object cannot be interpreted
    # as an integer".
    package = compile_script(tmp_path, COLLECTED_INSIDE, "c.yaml")
    output = run_under_kfp_local(package, tmp_path)
    assert sorted(values(output)) == sorted([
        "in-if [9, 1, 4]", "in-if-param [9, 1, 4]", "in-for [9, 1, 4]", "in-for [9, 1, 4]",
        "nested [1, 4]"]), output[-3000:]


ONE_OF = '''\
from kale.sdk import pipeline, step


@step
def two(tag, n):
    return tag, n * 2


@step
def show(label, value):
    print('VALUE', label, repr(value))


@pipeline(name='one-of')
def p(flag=False, ns=[1, 4, 7]):
    if not flag:
        a, b = two('not-flag', 1)
    else:
        a, b = two('flag', 2)
    show('a', a)
    show('b', b)
    for n in ns:
        if n < 2 or n > 5:
            c = two('edge', n)
        elif 2 <= n <= 5:
            c = two('middle', n)
        else:
            c = two('never', n)
        show('per-item', c)
'''


def expected_one_of(flag: bool) -> list[str]:
    """What the body gives in Python."""
    tag, n = ("flag", 2) if flag else ("not-flag", 1)
    seen = [f"a {tag!r}", f"b {n * 2!r}"]
    for n in [1, 4, 7]:
        tag = "edge" if n < 2 or n > 5 else "middle"
        seen.append(f"per-item {(tag, n * 2)!r}")
    return sorted(seen)


@pytest.mark.slow
@pytest.mark.parametrize("flag", [False, True])
def test_unpacked_one_of_and_one_of_in_a_loop_are_as_in_python_and_locally(tmp_path, flag):
    """`if not`, `or` and a chained comparison; unpacked outputs bound in every branch; an
    if/elif/else chain per iteration: kfp.local, the local run and Python agree."""
    package = compile_script(tmp_path, ONE_OF, "o.yaml")
    output = run_with(package, tmp_path, {"flag": flag})
    assert sorted(values(output)) == expected_one_of(flag), output[-3000:]
    local = subprocess.run(
        [sys.executable, "-c", f"import flow\nflow.p(flag={flag})"], cwd=tmp_path,
        capture_output=True, text=True, timeout=120)
    assert local.returncode == 0, local.stderr
    assert sorted(values(local.stdout)) == expected_one_of(flag), local.stdout


@pytest.mark.slow
def test_a_loop_over_a_parameter_whose_default_mixes_floats_and_ints_keeps_each_type(tmp_path):
    """Kubeflow hands each item of a list parameter as a float; the default's first item
    cannot say which were ints when it is a float (`[2.5, 1, 3]`): each item takes the type
    of the default's item it equals."""
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef show(label, value):\n    print('VALUE', label, repr(value))\n\n"
        "@pipeline(name='mixed')\ndef p(rates=[2.5, 1, 3], pairs=[[0.5, 2], [1, 1.5]]):\n"
        "    for r in rates:\n        show('rate', r)\n"
        "    for pair in pairs:\n        show('pair', pair)\n"), "m.yaml")
    output = run_under_kfp_local(package, tmp_path)
    assert sorted(values(output)) == sorted(
        ["rate 2.5", "rate 1", "rate 3", "pair [0.5, 2]", "pair [1, 1.5]"]), output[-3000:]
