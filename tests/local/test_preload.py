"""The zygote preloads the modules the steps import by full dotted name (``pkg.sub``, not only
``pkg``), and still never forks steps from a process where a preloaded module started threads:
that module is left out of the next zygote, and the rest are still preloaded."""

from __future__ import annotations

import signal
import sys

from kale.local.processes import _may_be_module, _preload
from tests.local.conftest import THREADED_LIBRARY


def installed_package(folder):
    """An installed package (in a site-packages folder outside the project, so not a project
    module) whose modules say in which process they were imported; ``pkg.busy`` starts a thread
    at import."""
    site = folder / "lib" / "site-packages"
    package = site / "pkg"
    package.mkdir(parents=True)
    where = "import os\nIMPORTED_IN = os.getpid()\n"
    (package / "__init__.py").write_text(where)
    (package / "fine.py").write_text(where + "VALUE = 41\n")
    (package / "deep").mkdir()
    (package / "deep" / "__init__.py").write_text(where)
    (package / "deep" / "inner.py").write_text(where + "def value():\n    return 1\n")
    (package / "busy.py").write_text(where + THREADED_LIBRARY)
    return site


def test_submodules_the_steps_import_are_preloaded(script, tmp_path_factory):
    site = installed_package(tmp_path_factory.mktemp("installed"))
    result = script.run('''
        @step
        def use():
            import os
            import pkg.deep.inner
            from pkg.fine import VALUE
            from pkg import fine
            # imported in the zygote (another process) before this step was forked from it
            return [VALUE + pkg.deep.inner.value(), fine.IMPORTED_IN != os.getpid(),
                    pkg.deep.inner.IMPORTED_IN != os.getpid()]

        @pipeline
        def p():
            use()

        if __name__ == "__main__":
            print("OUT", p().outputs)
    ''', PYTHONPATH=str(site), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OUT {'use': [42, True, True]}" in result.stdout


def test_a_later_run_in_the_same_process_gets_its_modules_preloaded(script,
                                                                     tmp_path_factory):
    # The zygote forks each attempt's process ahead of its request; modules a later run asks
    # the idle zygote to load must be in the processes forked after that, not only in new
    # zygotes.
    site = installed_package(tmp_path_factory.mktemp("installed"))
    result = script.run('''
        @step
        def plain():
            return 1

        @step
        def use():
            import os
            from pkg import fine
            return fine.IMPORTED_IN != os.getpid()

        @pipeline
        def first():
            plain()

        @pipeline
        def second():
            use()

        if __name__ == "__main__":
            first()
            print("OUT", second().outputs)
    ''', PYTHONPATH=str(site), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OUT {'use': True}" in result.stdout


def test_threads_are_counted_without_importing_threading():
    # Every Python thread counts, a thread started without `threading` too (which
    # threading.active_count() misses): any of them can hold a lock a fork would copy.
    import _thread
    import threading

    from kale.local.processes import _thread_count

    before = _thread_count()
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    raw, running = threading.Event(), threading.Event()
    _thread.start_new_thread(lambda: (running.set(), raw.wait()), ())
    running.wait(30)
    try:
        assert _thread_count() == before + 2
    finally:
        release.set()
        raw.set()
        worker.join()
    for _ in range(1000):
        if _thread_count() == before:
            break
        threading.Event().wait(0.01)
    assert _thread_count() == before


def test_a_submodule_that_starts_threads_is_left_out_and_the_rest_preloaded(
        script, tmp_path_factory):
    site = installed_package(tmp_path_factory.mktemp("installed"))
    result = script.run('''
        @step(timeout=20)
        def use():
            import os
            import pkg.busy
            import pkg.fine
            return [pkg.busy.record(), pkg.fine.IMPORTED_IN != os.getpid(),
                    pkg.busy.IMPORTED_IN != os.getpid()]

        @pipeline
        def p():
            use()

        if __name__ == "__main__":
            first = p().outputs["use"]
            second = p().outputs["use"]   # a notebook runs a pipeline again
            print("OUT", first, second)
    ''', PYTHONPATH=str(site), timeout=90)
    assert result.returncode == 0, result.stderr
    # The first run's zygote imported pkg.busy, saw its thread and refused to fork: the step
    # ran from a plain zygote. The second run's zygote preloads all but pkg.busy.
    assert "OUT ['recorded', False, False] ['recorded', True, False]" in result.stdout


def test_names_that_are_not_modules_are_not_searched_for():
    import json  # noqa: F401 - a package, imported

    assert not _may_be_module("typing.Any")  # typing is a module: nothing under it
    assert not _may_be_module("os.path.join")
    assert not _may_be_module("json.loads")  # an attribute of the package, not a module
    assert _may_be_module("json.tool")
    assert _may_be_module("a_top_level_name")
    assert not _may_be_module("no_such_package_anywhere.sub")


def test_preloading_puts_back_the_signal_handlers_a_library_installs(tmp_path, monkeypatch):
    (tmp_path / "grabs_sigterm.py").write_text(
        "import signal\nsignal.signal(signal.SIGTERM, lambda *_: None)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    try:
        # What it returns says whether this process has threads: a pytest-xdist worker has.
        _preload(["grabs_sigterm"])
        assert "grabs_sigterm" in sys.modules
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, before)
        sys.modules.pop("grabs_sigterm", None)
