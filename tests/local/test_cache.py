"""Step caching end to end: real scripts in subprocesses, with a side-effect counter in the steps
(each step appends its name to ``ran.txt`` when its code runs), so what ran is what the file
says, not what the record claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

KALE = Path(sys.executable).with_name("kale")

# A chain a -> b -> c, an independent d, and e that reads a module-level constant. b imports
# the project module helpers.py inside its body.
CHAIN = '''
    import os

    OFFSET = 1  # used by e
    UNUSED = 1  # used by no step

    def ran(name):
        with open("ran.txt", "a") as handle:
            handle.write(name + "\\n")

    @step
    def a():
        ran("a")
        return 10

    @step
    def b(x, k):
        from helpers import scale
        ran("b")
        return scale(x) + k

    @step
    def c(y):
        ran("c")
        return y * 2

    @step
    def d():
        ran("d")
        return "d"

    @step
    def e(x):
        ran("e")
        return x + OFFSET

    @pipeline(steps_defaults={"cache": True})
    def chain(k=1):
        x = a()
        y = b(x, k)
        c(y)
        d()
        e(x)

    if __name__ == "__main__":
        run = chain(k=int(os.environ.get("K", "1")))
        print("RESULT", run.outputs)
'''


class Project:
    """A project folder with a pipeline script; ``run`` returns the steps whose code ran."""

    def __init__(self, script, text: str = CHAIN) -> None:
        self.script = script
        self.text = text
        self.root: Path = script.root
        (self.root / "helpers.py").write_text("def scale(x):\n    return x * 3\n")

    def run(self, *args: str, expect: int = 0, **env: str) -> tuple[list[str], str]:
        ran = self.root / "ran.txt"
        ran.unlink(missing_ok=True)
        result = self.script.run(self.text, *args, **env)
        assert result.returncode == expect, result.stdout + result.stderr
        names = ran.read_text().split() if ran.exists() else []
        return sorted(names), result.stdout + result.stderr

    def edit(self, old: str, new: str) -> None:
        assert old in self.text
        self.text = self.text.replace(old, new)

    def latest(self) -> dict:
        return max(self.script.records(), key=lambda record: record["started"])


@pytest.fixture
def project(script):
    return Project(script)


def kale(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(KALE)] if KALE.exists() else [sys.executable, "-m", "kale.cli"]
    return subprocess.run([*command, *args, "--home", str(home)] if args[:1] != ("cache",)
                          else [*command, "cache", "--home", str(home), *args[1:]],
                          capture_output=True, text=True, cwd=cwd)


def test_a_second_run_executes_nothing_and_says_where_each_result_came_from(project):
    ran, _ = project.run()
    assert ran == ["a", "b", "c", "d", "e"]
    first = project.latest()
    ran, out = project.run()
    assert ran == []
    assert "RESULT {'c': 62, 'd': 'd', 'e': 11}" in out  # 10*3+1 = 31, doubled
    assert "≡ b" in out and "cached" in out and f"from run {first['id'][:8]}" in out
    assert "(5 of 5 tasks from the cache)" in out
    record = project.latest()
    assert record["status"] == "succeeded"
    for name, step in record["steps"].items():
        assert step["status"] == "cached", name
        assert step["attempts"] == []
        assert step["cached_from"]["run"] == first["id"]
        assert step["key"] == first["steps"][name]["key"]
        # the outputs are the new run's own files, hard links of the first run's
        (output_name, stored), = step["outputs"].items()
        output = Path(stored["path"])
        assert output.parent == project.script.home / "runs" / record["id"] / "steps" / name / \
            "outputs"
        first_output = Path(first["steps"][name]["outputs"][output_name]["path"])
        assert output.stat().st_ino == first_output.stat().st_ino
    shown = kale("show", record["id"][:8], home=project.script.home, cwd=project.root)
    assert shown.returncode == 0, shown.stderr
    assert f"cached: outputs of run {first['id']}" in shown.stdout
    assert "cached  0" in shown.stdout


def test_each_change_reruns_exactly_the_steps_it_reaches(project):
    assert project.run()[0] == ["a", "b", "c", "d", "e"]
    # an input: b takes k, and c takes what b returns
    assert project.run(K="2")[0] == ["b", "c"]
    assert project.run(K="2")[0] == []
    # a step's code
    project.edit("return y * 2", "return y * 4")
    assert project.run(K="2")[0] == ["c"]
    # a project module a step imports (inside its body)
    (project.root / "helpers.py").write_text("def scale(x):\n    return x * 5\n")
    assert project.run(K="2")[0] == ["b", "c"]
    # a module-level constant a step uses; one no step uses changes nothing
    project.edit("OFFSET = 1", "OFFSET = 2")
    assert project.run(K="2")[0] == ["e"]
    project.edit("UNUSED = 1", "UNUSED = 2")
    assert project.run(K="2")[0] == []


def test_comments_and_formatting_change_no_key(project):
    project.run()
    project.edit("        return y * 2", "        # doubled, as the report wants\n"
                 "        return (y\n                * 2)  # the same\n")
    project.edit("    OFFSET = 1  # used by e", "    OFFSET = (1)  # still e's")
    assert project.run()[0] == []


def test_an_upstream_rerun_with_the_same_output_leaves_downstream_cached(project):
    project.run()
    project.edit('ran("b")', 'ran("b")  # noqa\n        ran("")')  # b's code changes...
    ran, _ = project.run()
    assert ran == ["b"]  # ...but returns the same value, so c's inputs are unchanged


def test_no_cache_runs_everything_and_cache_turns_it_on_for_every_step(project):
    project.run()
    assert project.run("--no-cache")[0] == ["a", "b", "c", "d", "e"]
    assert project.latest()["cache"] is False
    project.edit('@pipeline(steps_defaults={"cache": True})', "@pipeline")
    project.edit("@step\n    def d", "@step(cache=True)\n    def d")
    assert project.run()[0] == ["a", "b", "c", "e"]  # only d is cached now
    assert project.run("--cache")[0] == []  # the flag wins: every step is cached
    assert project.run("--cache", "--no-cache", expect=2)[1].count("both given") == 1


def test_a_failed_attempt_is_never_kept(script):
    project = Project(script, '''
        import os

        @step(cache=True, retry_count=1)
        def flaky():
            with open("ran.txt", "a") as handle:
                handle.write("flaky\\n")
            if os.environ.get("FAIL") == "always":
                raise RuntimeError("down")
            if os.environ.get("FAIL") == "once" and not os.path.exists("failed-once"):
                open("failed-once", "w").close()
                raise RuntimeError("once")
            return 1

        @pipeline
        def p():
            flaky()

        if __name__ == "__main__":
            p()
    ''')
    assert project.run(FAIL="always", expect=1)[0] == ["flaky", "flaky"]
    assert project.run(FAIL="once")[0] == ["flaky", "flaky"]  # attempt 2 is the one kept
    assert project.run()[0] == []


LOOP = '''
    import os

    def ran(name):
        with open("ran.txt", "a") as handle:
            handle.write(name + "\\n")

    @step(cache=True)
    def items(n):
        ran("items")
        return [i * 10 for i in range(n)]

    @step(cache=True)
    def square(x):
        ran(f"square:{x}")
        return x * x

    @step(cache=True)
    def total(values):
        ran("total")
        return sum(values)

    @step(cache=True)
    def big(x):
        ran("big")
        return x

    @pipeline
    def loop(n=3, limit=1000):
        xs = items(n)
        squares = [square(x) for x in xs]
        t = total(squares)
        if t > limit:
            big(t)

    if __name__ == "__main__":
        run = loop(n=int(os.environ.get("N", "3")), limit=int(os.environ.get("LIMIT", "1000")))
        print("RESULT", {"total": run.output("total")})
'''


def test_a_cached_loop_opens_with_the_same_items_and_reuses_its_iterations(script):
    project = Project(script, LOOP)
    ran, out = project.run()
    assert ran == ["items", "square:0", "square:10", "square:20", "total"]
    ran, out = project.run()
    assert ran == []
    assert "`xs` has 3 items" in out  # the cached producer reports its items again
    record = project.latest()
    assert record["steps"]["items"]["reports"] == {"items:xs": 3}
    assert [record["steps"][f"square[{i}]"]["status"] for i in range(3)] == ["cached"] * 3
    assert record["steps"]["big"]["status"] == "skipped"  # the condition chose again
    assert "RESULT {'total': 500}" in out
    # one more item: the first three iterations are unchanged, the new one and total run
    ran, out = project.run(N="4", LIMIT="10000")
    assert ran == ["items", "square:30", "total"]
    assert "RESULT {'total': 1400}" in out
    # the condition now takes the other branch
    assert project.run(N="4")[0] == ["big"]
    assert project.latest()["steps"]["condition-1"]["reports"] == {"branch": 0}
    # with --cache the condition is cached too, and still takes its branch
    project.run("--cache", N="4")
    ran, out = project.run("--cache", N="4")
    record = project.latest()
    assert ran == [] and record["steps"]["condition-1"]["status"] == "cached"
    assert record["steps"]["condition-1"]["reports"] == {"branch": 0}
    assert record["steps"]["big"]["status"] == "cached"
    assert "runs `if t > limit`" in out


def test_a_damaged_entry_is_never_used(project):
    project.run()
    objects = project.script.home / "cache" / "objects"
    entries = list((project.script.home / "cache" / "entries").glob("*/*.json"))
    by_task = {json.loads(path.read_text())["task"]: json.loads(path.read_text())
               for path in entries}
    damaged = objects / by_task["c"]["outputs"]["return"]["object"]
    damaged.write_text("666")  # the same size, another content
    gone = objects / by_task["d"]["outputs"]["return"]["object"]
    gone.unlink()
    ran, out = project.run()
    assert ran == ["c", "d"]
    assert "cached result of `c` was damaged" in out
    assert "RESULT {'c': 62, 'd': 'd', 'e': 11}" in out  # never the damaged value
    assert project.run()[0] == []  # the entries written again are good


def test_a_half_written_entry_is_never_used(project):
    project.run()
    entry = next(path for path in (project.script.home / "cache" / "entries").glob("*/*.json")
                 if json.loads(path.read_text())["task"] == "c")
    entry.write_text(entry.read_text()[:40])
    assert project.run()[0] == ["c"]


def test_the_cache_is_capped_and_evicts_the_least_recently_used(script):
    project = Project(script, '''
        import os

        @step(cache=True)
        def blob(seed):
            with open("ran.txt", "a") as handle:
                handle.write(f"blob{seed}\\n")
            return bytes([seed]) * 400_000

        @pipeline
        def p(seed=1):
            blob(seed)

        if __name__ == "__main__":
            p(seed=int(os.environ["SEED"]))
    ''')
    (project.root / "pyproject.toml").write_text('[tool.kale.cache]\nmax_size = "1MB"\n')
    for seed in (1, 2):
        assert project.run(SEED=str(seed))[0] == [f"blob{seed}"]
    assert project.run(SEED="1")[0] == []  # used again: 2 is now the least recently used
    assert project.run(SEED="3")[0] == ["blob3"]  # 1.2 MB: one entry must go
    assert project.run(SEED="1")[0] == []
    assert project.run(SEED="2")[0] == ["blob2"]  # evicted
    objects = project.script.home / "cache" / "objects"
    size = sum(path.stat().st_size for path in objects.glob("*/*"))
    assert size <= 1_000_000


def test_bad_max_size_is_an_error_before_anything_runs(project):
    (project.root / "pyproject.toml").write_text('[tool.kale.cache]\nmax_size = "lots"\n')
    ran, out = project.run(expect=1)
    assert ran == []
    assert "`max_size` in [tool.kale.cache] of pyproject.toml is 'lots', not a size" in out
    assert "pyproject.toml:2" in out and 'fix: write max_size as a number of bytes' in out


def test_kale_cache_shows_and_clears(project):
    project.run()
    home = project.script.home
    shown = kale("cache", home=home, cwd=project.root)
    assert shown.returncode == 0, shown.stderr
    assert "5 entries" in shown.stdout and "of 10.0 GB" in shown.stdout
    assert "chain" in shown.stdout
    bad = kale("cache", "clear", "--older-than", "a week", home=home, cwd=project.root)
    assert bad.returncode == 1
    assert "--older-than 'a week' is not an age" in bad.stderr
    assert "--older-than 7d" in bad.stderr
    kept = kale("cache", "clear", "--older-than", "7d", home=home, cwd=project.root)
    assert "removed 0 cache entries not used for 7d" in kept.stdout
    cleared = kale("cache", "clear", home=home, cwd=project.root)
    assert "removed 5 cache entries" in cleared.stdout
    assert project.run()[0] == ["a", "b", "c", "d", "e"]


def test_a_macro_parameter_is_said_once_and_reruns_what_it_reaches(script):
    project = Project(script, '''
        @step(cache=True)
        def stamp(tag):
            with open("ran.txt", "a") as handle:
                handle.write("stamp\\n")
            return tag

        @step(cache=True)
        def fixed():
            with open("ran.txt", "a") as handle:
                handle.write("fixed\\n")
            return 1

        @pipeline
        def p(tag="run-[[RunUUID]]"):
            stamp(tag)
            fixed()

        if __name__ == "__main__":
            p()
    ''')
    project.run()
    ran, out = project.run()
    assert ran == ["stamp"]
    assert out.count("macro") == 1
    assert "`tag` ([[RunUUID]]) reaches `stamp`" in out


def test_bad_cache_values_are_explained(script):
    result = script.run('''
        @step(cache="yes")
        def a():
            return 1
    ''')
    assert result.returncode == 2
    assert "cache='yes' is not valid: True or False is expected" in result.stderr
    assert "fix: write cache=True" in result.stderr
    result = script.run('''
        @step
        def a():
            return 1

        @pipeline(steps_defaults={"cache": 1})
        def p():
            a()
    ''')
    assert result.returncode == 2
    assert "steps_defaults.cache=1 is not valid" in result.stderr
    result = script.run('''
        @step
        def a():
            return 1

        @pipeline
        def p():
            a()

        p.run(cache="no")
    ''')
    assert result.returncode == 2, result.stderr
    assert "cache='no' is not valid: run() takes True, False or None" in result.stderr


def test_run_takes_cache_for_one_run(project):
    project.edit("run = chain(k=int(", "run = chain.run(cache=os.environ.get('C') == '1', k=int(")
    project.edit('@pipeline(steps_defaults={"cache": True})', "@pipeline")
    assert project.run(C="1")[0] == ["a", "b", "c", "d", "e"]
    assert project.run(C="1")[0] == []
    assert project.run(C="0")[0] == ["a", "b", "c", "d", "e"]
