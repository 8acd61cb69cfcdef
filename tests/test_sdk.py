"""The decorators: bare and called forms, option errors at the decorator, plain calls of steps,
and calling a pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from kale.errors import InvalidOptionError, PipelineArgumentError, StepDefinitionError
from kale.sdk import KaleWarning, PipelineFunction, StepFunction, pipeline, step


def test_bare_and_called_forms():
    @step
    def a(x):
        return x + 1

    @step(name="Bee Step", timeout="2m", retry_count=2, retry_interval=5, retry_factor=2,
          retry_max_interval="1m", limits={"memory": "1Gi"}, labels={"team": "x"},
          annotations={"note": "hi"})
    def b(x):
        return x * 2

    assert isinstance(a, StepFunction) and isinstance(b, StepFunction)
    assert a.step_name == "a" and a.options == {}
    assert b.step_name == "bee-step" and b.display_name == "Bee Step"
    assert b.options["timeout"] == 120 and b.options["retry_max_interval"] == 60
    assert a.__name__ == "a" and a.__wrapped__(1) == 2


def test_a_step_called_outside_a_pipeline_is_the_plain_function():
    @step(retry_count=3)
    def add(x, y=1):
        return x + y

    assert add(1) == 2
    assert add(1, y=5) == 6
    with pytest.raises(TypeError):
        add()


def test_pipeline_forms_and_options():
    @pipeline
    def bare():
        pass

    @pipeline(name="Model Training", experiment="exp", timeout="1h", description="d",
              steps_defaults={"retry_count": 2})
    def called():
        pass

    assert isinstance(bare, PipelineFunction) and bare.options.name == "bare"
    assert called.options.name == "model-training"
    assert called.options.display_name == "Model Training"
    assert called.options.steps_defaults == {"retry_count": 2}


def test_option_errors_point_at_the_keyword_in_the_decorator():
    with pytest.raises(InvalidOptionError) as caught:
        @step(name="ok",
              retry_count=-1)
        def f():
            pass
    error = caught.value
    assert error.option == "retry_count" and error.value == -1
    assert error.location.file == __file__
    assert "retry_count=-1" in error.location.source_line
    assert error.location.column == error.location.source_line.index("retry_count")
    assert "retry_count=-1 is not valid: a whole number of at least 0 is expected" in str(error)


def test_a_retry_factor_that_is_not_whole_is_refused_at_the_decorator():
    # Argo reads backoff.factor as an int (argo-workflows util/intstr/parametrizable.go): a
    # factor of 1.5 would fail the first retry on KFP 2.14+, so the decorator refuses it.
    with pytest.raises(InvalidOptionError) as caught:
        @step(retry_count=2, retry_factor=1.5)
        def f():
            pass
    error = caught.value
    assert error.option == "retry_factor" and error.location.file == __file__
    assert error.location.column == error.location.source_line.index("retry_factor")
    assert "take a whole number" in error.message and error.fix.startswith("use 1 or 2")


def test_steps_defaults_errors_point_at_the_key():
    with pytest.raises(InvalidOptionError) as caught:
        @pipeline(steps_defaults={"timeout": 600,
                                  "retry_factor": 0.5})
        def f():
            pass
    error = caught.value
    assert error.option == "steps_defaults.retry_factor"
    assert '"retry_factor": 0.5' in error.location.source_line
    assert error.location.column == error.location.source_line.index('"retry_factor"')


@pytest.mark.parametrize(
    ("decorator", "option", "suggestion"),
    [(step, "retries", "retry_count"), (step, "time_out", "timeout"),
     (pipeline, "experiement", "experiment"), (pipeline, "step_defaults", "steps_defaults")],
)
def test_unknown_options_suggest_the_right_one(decorator, option, suggestion):
    with pytest.raises(InvalidOptionError) as caught:
        decorator(**{option: 1})
    assert f"did you mean {suggestion!r}" in str(caught.value)
    assert caught.value.location.file == __file__


@pytest.mark.parametrize(
    ("target", "fragment"),
    [("train", "options are keywords: @step(name='train')"),
     (int, "decorates functions, not a class"),
     (lambda: 1, "cannot decorate a lambda")],
)
def test_step_decorates_functions_only(target, fragment):
    with pytest.raises(StepDefinitionError) as caught:
        step(target)
    assert fragment in str(caught.value)


def test_decorating_twice_is_an_error():
    @step
    def f():
        pass

    with pytest.raises(StepDefinitionError, match="already decorated with @step"):
        pipeline(f)


def test_function_and_options_together_is_an_error():
    def f():
        pass

    with pytest.raises(StepDefinitionError, match="either a function or options"):
        step(f, name="x")


def test_autosnapshot_warns_that_it_has_no_effect():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @pipeline(autosnapshot=True)
        def f():
            pass

    assert any(issubclass(w.category, KaleWarning) and "Rok" in str(w.message) for w in caught)
    assert f.options.autosnapshot is True


def test_the_graph_is_parsed_lazily_so_steps_may_come_after_the_pipeline(project):
    module = project.load('''
        @pipeline
        def late():
            later_step()

        @step
        def later_step():
            return 1
    ''')
    assert [s.name for s in module.late.graph.steps] == ["later-step"]


def test_calling_a_pipeline_validates_and_binds_arguments(project):
    module = project.load('''
        @pipeline(name="run-me")
        def p(source="db", iters=10, rate=0.5, flag=False, items=[1]):
            data = load(source)
            train(data, iters, rate)
    ''')
    pipe = module.p
    assert pipe.bind_arguments() == {"source": "db", "iters": 10, "rate": 0.5, "flag": False,
                                     "items": [1]}
    bound = pipe.bind_arguments("s3", "20", rate=1, flag="true", items="[2, 3]")
    assert bound == {"source": "s3", "iters": 20, "rate": 1.0, "flag": True, "items": [2, 3]}
    assert isinstance(bound["rate"], float)
    assert pipe.bind_arguments(items=(4,), flag="0")["items"] == [4]
    assert pipe.graph.step("train").arguments[1].source.name == "iters"


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((), {"iter": 1}, "has no parameter 'iter'"),
        ((), {"iter": 1}, "did you mean 'iters'"),
        (("a", 1, 2), {}, "takes 2 positional value(s) but 3 were given"),
        (("a",), {"source": "b"}, "was given twice"),
        ((), {"iters": "ten"}, "'iters' of `p` is a int (its default is 10): 'ten' cannot be"),
        ((), {"iters": True}, "a int is expected, not bool True"),
        ((), {"iters": 1.5}, "a int is expected, not float"),
        ((), {"source": 3}, "a str is expected, not int 3"),
    ],
)
def test_bad_pipeline_arguments(project, args, kwargs, fragment):
    module = project.load('''
        @pipeline
        def p(source="db", iters=10):
            load(source)
    ''')
    with pytest.raises(PipelineArgumentError) as caught:
        module.p(*args, **kwargs)
    assert fragment in str(caught.value)
    assert caught.value.location.file == __file__
    assert "module.p(" in Path(__file__).read_text().splitlines()[caught.value.location.line - 1]


def test_import_of_kale_sdk_stays_light():
    import subprocess
    import sys

    code = ("import sys, kale.sdk; heavy = {'kfp', 'numpy', 'pandas', 'kale.graph', 'click',"
            " 'IPython', 'kale.notebook.kernel'} & set(sys.modules); print(sorted(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_a_function_name_kubeflow_cannot_use_is_explained_at_the_decorator():
    with pytest.raises(StepDefinitionError) as caught:
        @step
        def 訓練():
            pass
    assert "the step's name comes from its function, `訓練`" in caught.value.message
    assert caught.value.fix == 'give the step a name: @step(name="my-step")'

    @step(name="train")
    def 訓練2():
        pass

    assert 訓練2.step_name == "train"


def test_keyword_only_parameters_are_not_filled_by_position(project):
    module = project.load('''
        @pipeline
        def p(a=1, *, b="x"):
            load(b)
    ''')
    with pytest.raises(PipelineArgumentError, match="takes 1 positional value"):
        module.p.bind_arguments(2, "y")
    assert module.p.bind_arguments(2, b="y") == {"a": 2, "b": "y"}


# What importing and decorating change in the process -------------------------------------------


def _python(tmp_path, *arguments, **env):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120,
                          env={**os.environ, "KALE_HOME": str(tmp_path / "home"),
                               "KALE_PROGRESS": "plain", "KALE_PRESTART": "0", **env})


LIBRARY = '''
from kale.sdk import pipeline, step


@step
def double(x):
    return 2 * x


@pipeline(name="doubling")
def doubling(x=1):
    double(x)
'''


def test_importing_the_sdk_or_a_library_of_pipelines_leaves_argv_and_hooks_alone(tmp_path):
    (tmp_path / "flows.py").write_text(LIBRARY)
    code = ("import sys, warnings\n"
            "sys.argv[1:] = ['--kfp', '--parallelism', '3', '--', 'x']\n"
            "hooks = (sys.excepthook, warnings.showwarning)\n"
            "import kale.sdk, flows\n"
            "print(sys.argv[1:], hooks == (sys.excepthook, warnings.showwarning))\n")
    result = _python(tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['--kfp', '--parallelism', '3', '--', 'x'] True"


SCRIPT_WITH_TWO = '''
import sys

from kale.sdk import pipeline, step


@step
def show(x):
    print("STEP GOT", x)


@pipeline(name="first")
def first(x=1):
    show(x)


@pipeline(name="second")
def second(x=2):
    show(x)


if __name__ == "__main__":
    print("ARGV", sys.argv[1:], sys.excepthook.__module__)
    first()
'''


def test_the_script_being_run_has_kales_flags_taken_once_when_it_defines_a_pipeline(tmp_path):
    (tmp_path / "two.py").write_text(SCRIPT_WITH_TWO)
    # Taken twice, the second pipeline would take the script's own --parallelism too.
    result = _python(tmp_path, "two.py", "--parallelism", "1", "--", "--parallelism", "5")
    assert result.returncode == 0, result.stderr
    assert "ARGV ['--parallelism', '5'] kale.errors" in result.stdout
    assert "STEP GOT 1" in result.stdout


def test_a_pipeline_imported_by_the_script_reads_the_flags_when_the_script_calls_it(tmp_path):
    (tmp_path / "flows.py").write_text(LIBRARY)
    (tmp_path / "main.py").write_text(
        "import sys\nfrom flows import doubling\n\n"
        "if __name__ == '__main__':\n"
        "    package = doubling(x=3)\n"
        "    print('GOT', type(package).__name__, package.status, sys.argv[1:])\n")
    result = _python(tmp_path, "main.py", "--kfp", "--dry-run", "-o", "d.yaml", "--", "mine")
    assert result.returncode == 0, result.stderr
    assert "GOT PipelinePackage compiled ['mine']" in result.stdout
    assert (tmp_path / "d.yaml").exists()


def test_a_step_decorator_mistake_in_the_script_is_shown_as_kales_error(tmp_path):
    (tmp_path / "bad.py").write_text("from kale.sdk import step\n\n@step(retry_count=-1)\n"
                                     "def s():\n    pass\n")
    result = _python(tmp_path, "bad.py")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error: retry_count=-1" in result.stderr


# In a step's process -----------------------------------------------------------------------------


def _as_main(source, filename):
    """Execute ``source`` as the script being run would be (``__name__ == "__main__"``)."""
    namespace = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace


def _record_script_preparation(monkeypatch):
    import kale.sdk
    from kale import flags

    calls = []
    monkeypatch.setattr(kale.sdk, "_script_prepared", False)
    monkeypatch.setattr(kale.sdk, "install_excepthook", lambda: calls.append("hook"))
    monkeypatch.setattr(flags, "load_from_sys_argv", lambda: calls.append("flags"))
    monkeypatch.setattr(kale.sdk, "_prestart_step_processes", lambda: calls.append("zygote"))
    return calls


TWO_PIPELINES_AS_MAIN = '''
from kale.sdk import pipeline, step

@step
def s():
    return 1

@pipeline
def p():
    s()

@pipeline
def q():
    s()
'''


def test_a_scripts_pipelines_prepare_the_process_once(monkeypatch, tmp_path):
    monkeypatch.delenv("KALE_IN_STEP", raising=False)
    calls = _record_script_preparation(monkeypatch)
    _as_main(TWO_PIPELINES_AS_MAIN, str(tmp_path / "script.py"))
    # Each decorator installs the (idempotent) hook; flags are read once; one zygote is kept.
    assert calls.count("flags") == 1 and "hook" in calls and "zygote" in calls


def test_in_a_steps_process_a_pipeline_prepares_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("KALE_IN_STEP", "train")
    calls = _record_script_preparation(monkeypatch)
    _as_main(TWO_PIPELINES_AS_MAIN, str(tmp_path / "script.py"))
    assert calls == []


@pytest.mark.parametrize(("call", "what"), [
    ("p()", "was called"),
    ("p.run()", "was run with .run()"),
    ("p.compile()", "was compiled with .compile()"),
    ("p.submit()", "was submitted with .submit()"),
])
def test_in_a_steps_process_a_pipeline_cannot_start(project, monkeypatch, call, what):
    from kale.errors import KaleError

    module = project.load('''
        @pipeline(name="nested")
        def p():
            load()
    ''')
    monkeypatch.setenv("KALE_IN_STEP", "train")
    with pytest.raises(KaleError) as caught:
        eval(compile(call, __file__, "eval"), {"p": module.p})
    error = caught.value
    assert error.message.startswith(f"pipeline `nested` {what} inside step `train`")
    assert "a step cannot start a pipeline" in error.message
    assert 'if __name__ == "__main__":' in error.fix
    assert error.location.file == __file__
    assert not (project.root / "nested.yaml").exists()


class _Thing:
    pass


def _nested(depth):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("kwargs", "fragment", "fix"),
    [
        ({"n": 10**5000}, "'n' of `p` is an int of about 5001 digits", "pass it as a string"),
        ({"rate": 10**400}, "'rate' of `p` is an int of about 401 digits", "int(value)"),
        ({"rate": float("nan")}, "'rate' of `p` is nan; Kubeflow parameters are JSON",
         "pass it as a string ('nan')"),
        ({"rate": "inf"}, "'rate' of `p` is inf", "float(value)"),
        ({"items": [1, float("-inf")]}, "'items' of `p` holds -inf at [1]", "float(value)"),
        ({"items": "[NaN]"}, "'items' of `p` holds nan at [0]", "float(value)"),
        ({"items": [{1, 2}]}, "'items' of `p` holds a set at [0]", "`set(value)`"),
        ({"items": [_Thing()]}, "'items' of `p` holds a _Thing at [0]", "build it in the step"),
        ({"config": {1: "a"}}, "'config' of `p` is a dict with the key 1, an int",
         "string keys"),
        ({"items": _nested(5000)}, "'items' of `p` nests lists or dicts too deeply",
         "json.loads(value)"),
        ({"items": "[" * 100_000 + "]" * 100_000}, "'items' of `p` is a list (its default is "
         "[1]): '[[[[[", "pass a list"),
    ],
)
def test_call_values_kubeflow_cannot_carry_are_refused_before_anything_runs(
        project, tmp_path, monkeypatch, kwargs, fragment, fix):
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "home"))
    module = project.load('''
        @pipeline
        def p(n=1, rate=0.5, items=[1], config={"a": 1}):
            load(n)
    ''')
    with pytest.raises(PipelineArgumentError) as caught:
        module.p(**kwargs)
    assert fragment in caught.value.message
    assert fix in caught.value.fix
    assert "module.p(**kwargs)" in caught.value.location.source_line
    assert not (tmp_path / "home").exists()  # no run folder, with or without run.json
    with pytest.raises(PipelineArgumentError):  # and the same check before Kubeflow is called
        module.p.submit(host="http://127.0.0.1:9", **kwargs)


def test_call_values_kubeflow_carries_are_kept(project):
    module = project.load('''
        @pipeline
        def p(n=1, rate=0.5, items=[1], config={"a": 1}):
            load(n)
    ''')
    bound = module.p.bind_arguments(n=2**60, rate=10**300, items=(1, (2, None), _nested(49)),
                                    config={"a": {"b": [1.5, "x"]}})
    assert bound["n"] == 2**60  # locally; --kfp refuses it with its own advice
    assert bound["rate"] == 1e300 and isinstance(bound["rate"], float)
    assert bound["items"] == [1, (2, None), _nested(49)]
