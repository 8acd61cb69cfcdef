"""Kale's flags on a pipeline script's command line: taken out, checked, the rest left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kale.flags import HELP, FlagError, take_flags


def test_kale_flags_are_taken_out_and_the_scripts_own_stay():
    argv = ["script.py", "data.csv", "-K", "--epochs", "3", "-D", "-o=p.yaml",
            "--bundle-store", "minio://mlpipeline/kale", "--verbose"]
    flags = take_flags(argv)
    assert argv == ["script.py", "data.csv", "--epochs", "3", "--verbose"]
    assert (flags.kfp, flags.dry_run, flags.output) == (True, True, "p.yaml")
    assert flags.bundle_store == "minio://mlpipeline/kale"


def test_nothing_after_a_double_dash_is_kales():
    argv = ["script.py", "--kfp", "--", "--dry-run"]
    flags = take_flags(argv)
    assert flags.kfp and not flags.dry_run and argv == ["script.py", "--", "--dry-run"]


@pytest.mark.parametrize(("argv", "message", "fix"), [
    (["--kfp", "--dryrun"], "--dryrun is not one of Kale's flags", "did you mean --dry-run?"),
    (["--kfp", "--dry_run"], "--dry_run is not one of Kale's flags", "did you mean --dry-run?"),
    (["-K", "--kfp-hosts", "x"], "--kfp-hosts is not one of", "did you mean --kfp-host?"),
    (["-K", "--Bundle_Store=s3://b"], "--Bundle_Store is not one", "--bundle-store?"),
    (["--kfp=1"], "--kfp takes no value (got '--kfp=1')", "write --kfp alone"),
    (["--kfp", "--wait=yes"], "--wait takes no value", "write --wait alone"),
    (["--kfp", "-o"], "-o needs a value", "-o pipeline.yaml"),
    (["--dry-run"], "--dry-run is for running on Kubeflow", "add --kfp"),
    (["--parallelism", "two"], "--parallelism 'two' is not valid", "--parallelism 4"),
])
def test_mistakes_are_explained(argv, message, fix):
    with pytest.raises(FlagError) as caught:
        take_flags(["script.py", *argv])
    assert message in caught.value.message and fix in caught.value.fix
    assert caught.value.exit_code == 2


def test_a_scripts_own_lookalike_flags_are_left_alone_when_running_locally():
    argv = ["script.py", "--dry_run", "--parallelism", "2"]
    assert take_flags(argv).parallelism == 2
    assert argv == ["script.py", "--dry_run"]


def test_help_with_kfp_lists_kales_flags_instead_of_submitting(capsys):
    with pytest.raises(SystemExit) as caught:
        take_flags(["script.py", "--kfp", "--help"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == HELP
    assert "--bundle-store URI" in HELP and "-D, --dry-run" in HELP


_USER_TOKENS = st.text(alphabet="abcxyz0123-_=./", min_size=1, max_size=12).filter(
    lambda token: not token.startswith("-") or len(token) < 4)


@given(user=st.lists(_USER_TOKENS, max_size=8), output=st.text(
    alphabet="abc./", min_size=1, max_size=10), position=st.integers(0, 8))
def test_any_script_arguments_survive_in_order(user, output, position):
    argv = ["script.py", *user]
    position = min(position, len(user)) + 1
    if "--" in user[: position - 1]:
        return  # Kale's flags after "--" are the script's
    argv[position:position] = ["--kfp", "--output", output]
    try:
        flags = take_flags(argv)
    except FlagError:
        # Only a user token that is itself a Kale flag (or a typo of one) can make this fail.
        assert any(token.split("=")[0] in ("-K", "-D", "-o") or token.startswith("--")
                   for token in user)
        return
    assert flags.kfp and flags.output == output
    assert argv == ["script.py", *user]
