"""Adversarial checks of the step processes (kale.local.processes): the spare a zygote forks
ahead and the invocation it is handed through a pipe, the early take of a success, what a
step leaves behind when Kale's process or the zygote is killed, and what a step changes in
its own process that a later one must not see."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("size", [100_000, 1_500_000])
def test_a_step_whose_source_is_larger_than_a_pipe_runs_while_others_end(script, size):
    # The invocation (the step's source and context) goes to the forked process through a
    # pipe, larger than the pipe holds: the zygote writes it while other attempts end, and
    # each end is a signal that cuts a pipe write short.
    literal = "x" * size
    result = script.run(f'''
        BIG = "{literal}"

        @step
        def big(i: int) -> int:
            return len(BIG) + i

        @step
        def small(i: int) -> int:
            return i

        @pipeline
        def large():
            for i in range(60):
                small(i)
                big(i)

        if __name__ == "__main__":
            print("RESULT", large().outputs["big"][:2])
    ''', "--parallelism", "4", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"RESULT [{size}, {size + 1}]" in result.stdout
    record = script.record()
    assert all(state["status"] == "succeeded" for state in record["steps"].values())
    assert all(len(state["attempts"]) == 1 for state in record["steps"].values())
