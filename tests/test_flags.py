"""Kale's flags on a pipeline script's command line: taken out, checked, the rest left alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kale.flags import _LONG, HELP, FlagError, Flags, take_flags, without_resume


def test_kale_flags_are_taken_out_and_the_scripts_own_stay():
    argv = ["script.py", "data.csv", "-K", "--epochs", "3", "-D", "-o=p.yaml",
            "--bundle-store", "minio://mlpipeline/kale", "--verbose"]
    flags = take_flags(argv)
    assert argv == ["script.py", "data.csv", "--epochs", "3", "--verbose"]
    assert (flags.kfp, flags.dry_run, flags.output) == (True, True, "p.yaml")
    assert flags.bundle_store == "minio://mlpipeline/kale"


def test_every_kubeflow_flag_is_taken_with_kfp():
    argv = ["script.py", "--kfp", "--dry-run", "--output", "p.yaml", "--wait", "--kfp-host",
            "http://h:8080", "--namespace=team", "--image", "python:3.12", "--requirements",
            "reqs.txt", "--bundle-store=s3://b/k", "--parallelism", "2", "mine"]
    assert take_flags(argv) == Flags(parallelism=2, kfp=True, dry_run=True, output="p.yaml",
                                     wait=True, kfp_host="http://h:8080", namespace="team",
                                     image="python:3.12", requirements="reqs.txt",
                                     bundle_store="s3://b/k")
    assert argv == ["script.py", "mine"]


# Bug 11: without --kfp a script's own --output (and the rest) must reach it.
_SCRIPTS_OWN = ["--output", "report.csv", "-o", "x", "--image", "cat.png", "--namespace", "n",
                "--dry-run", "-D", "--wait", "--kfp-host", "h", "--requirements", "r.txt",
                "--bundle-store", "b", "--output=o", "-oFILE", "-Do", "--kfp=1"]


def test_without_kfp_only_parallelism_is_kales():
    argv = ["script.py", *_SCRIPTS_OWN[:10], "--parallelism", "3", *_SCRIPTS_OWN[10:]]
    flags = take_flags(argv)
    assert flags == Flags(parallelism=3)
    assert argv == ["script.py", *_SCRIPTS_OWN]


def test_the_double_dash_kale_stops_at_is_removed_and_a_second_one_kept():
    argv = ["script.py", "--kfp", "--", "--dry-run", "--", "-o", "x"]
    flags = take_flags(argv)
    assert flags.kfp and not flags.dry_run
    assert argv == ["script.py", "--dry-run", "--", "-o", "x"]
    argv = ["script.py", "--parallelism", "2", "--", "--output", "report.csv"]
    assert take_flags(argv) == Flags(parallelism=2)
    assert argv == ["script.py", "--output", "report.csv"]
    # With no flag of Kale's, Kale is not there: a "--" is the script's own, as without Kale.
    argv = ["script.py", "--", "--parallelism", "2", "--kfp"]
    assert take_flags(argv) == Flags()
    assert argv == ["script.py", "--", "--parallelism", "2", "--kfp"]


def test_short_flags_combine_as_argparse_combines_them():
    argv = ["script.py", "-KD", "-op.yaml", "data"]
    assert take_flags(argv) == Flags(kfp=True, dry_run=True, output="p.yaml")
    assert argv == ["script.py", "data"]
    argv = ["script.py", "-DKo", "q.yaml"]
    assert take_flags(argv) == Flags(kfp=True, dry_run=True, output="q.yaml") and len(argv) == 1


# Bug 7: each of these would reach the script in --kfp mode and submit the pipeline for real.
@pytest.mark.parametrize(("argument", "meant"), [
    ("--dryrun", "--dry-run"), ("--dry_run", "--dry-run"), ("--dry", "--dry-run"),
    ("--dr", "--dry-run"), ("--d", "--dry-run"), ("--Dry", "--dry-run"), ("--DRY-RUN", "--dry-run"),
    ("-dry-run", "--dry-run"), ("-dry", "--dry-run"), ("---dry-run", "--dry-run"),
    ("\u2014dry-run", "--dry-run"), ("\u2013dry-run", "--dry-run"),
    ("\u2013\u2013dry-run", "--dry-run"),
    ("--dry\u2013run", "--dry-run"), ("\u2212D", "-D"), ("\u2014", "--"),
    ("-d", "-D"), ("-k", "-K"), ("-O", "-o"), ("-O=p.yaml", "-o"), ("-d=1", "-D"),
    ("--kfp_host", "--kfp-host"), ("--kfphost=h", "--kfp-host"), ("--dr", "--dry-run"),
    ("--kfp-hosts", "--kfp-host"), ("-kfp", "--kfp"), ("--KFP", "--kfp"),
    ("--d", "--dry-run"), ("--Bundle_Store=s3://b", "--bundle-store"),
    ("--DRY", "--dry-run"), ("-output", "--output"),
    ("--dry-", "--dry-run"), ("--images", "--image"),
    ("--paralelism", "--parallelism"),
])
def test_near_misses_of_kales_flags_are_errors_with_kfp(argument, meant):
    with pytest.raises(FlagError) as caught:
        take_flags(["script.py", "--kfp", "--dry-run", argument, "x"])
    assert f"{argument.split('=')[0]} is not one of Kale's flags" in caught.value.message
    assert f"did you mean {meant}?" in caught.value.fix
    assert caught.value.exit_code == 2
    # After --, and without --kfp, they are the script's and Kale leaves them alone.
    argv = ["script.py", "--kfp", "--", argument, "x"]
    assert take_flags(argv).kfp and argv == ["script.py", argument, "x"]
    if meant != "--kfp":  # a mistyped --kfp is an error even without --kfp
        argv = ["script.py", argument, "x"]
        assert take_flags(argv) == Flags() and argv == ["script.py", argument, "x"]


def test_pasted_dashes_are_explained():
    with pytest.raises(FlagError) as caught:
        take_flags(["script.py", "-K", "\u2014dry-run"])
    assert "not ASCII hyphens" in caught.value.message


def test_the_scripts_own_short_flags_and_numbers_stay_with_kfp():
    argv = ["script.py", "--kfp", "-n", "5", "-v", "-1", "-", "-x=2", "--epochs", "3", "--data"]
    assert take_flags(argv).kfp
    assert argv == ["script.py", "-n", "5", "-v", "-1", "-", "-x=2", "--epochs", "3", "--data"]


@pytest.mark.parametrize(("argv", "message", "fix"), [
    (["--kfp=1"], "", ""),  # without --kfp it is the script's (checked below)
    (["--kfp", "--kfp=1"], "--kfp takes no value (got '--kfp=1')", "write --kfp alone"),
    (["--kfp", "--wait=yes"], "--wait takes no value", "write --wait alone"),
    (["--kfp", "-K=1"], "-K takes no value (got '-K=1')", "write -K alone"),
    (["-K", "-Dx"], "-D takes no value (got '-Dx')", "write -D alone"),
    (["--parallelism", "two"], "--parallelism 'two' is not valid", "--parallelism 4"),
    (["--parallelism", "-1"], "--parallelism '-1' is not valid", "--parallelism 4"),
    (["--kfp", "--output", "--dry-run"],
     "--output needs a value (the next argument, '--dry-run', looks like a flag)",
     "write a value that starts with '-' as --output=VALUE"),
    (["--kfp", "-o", "\u2014dry-run"], "-o needs a value", "-o pipeline.yaml"),
    (["--parallelism", "--"], "--parallelism needs a value", "--parallelism 4"),
])
def test_mistakes_are_explained(argv, message, fix):
    if not message:
        assert take_flags(["script.py", *argv]) == Flags()
        return
    with pytest.raises(FlagError) as caught:
        take_flags(["script.py", *argv])
    assert message in caught.value.message and fix in caught.value.fix
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("flag", "example"), [
    ("--parallelism", "4"), ("--output", "pipeline.yaml"), ("-o", "pipeline.yaml"),
    ("--kfp-host", "http://localhost:8080"), ("--namespace", "my-profile"),
    ("--image", "python:3.11"), ("--requirements", "requirements.txt"),
    ("--bundle-store", "minio://mlpipeline/kale"),
])
@pytest.mark.parametrize("form", ["last", "empty", "flag next"])
def test_a_missing_value_is_explained_with_a_value_of_its_kind(flag, example, form):
    argument = {"last": [flag], "empty": [f"{flag}="], "flag next": [flag, "--wait"]}[form]
    with pytest.raises(FlagError) as caught:
        take_flags(["script.py", "--kfp", *argument])
    assert caught.value.message.startswith(f"{flag} needs a value")
    assert f"for example: {flag} {example}" in caught.value.fix


def test_a_scripts_own_lookalike_flags_are_left_alone_when_running_locally():
    argv = ["script.py", "--dry_run", "-d", "\u2014dry-run", "--parallelism", "2", "--name", "n"]
    assert take_flags(argv).parallelism == 2
    assert argv == ["script.py", "--dry_run", "-d", "\u2014dry-run", "--name", "n"]


def test_help_with_kfp_lists_kales_flags_instead_of_submitting(capsys):
    with pytest.raises(SystemExit) as caught:
        take_flags(["script.py", "--kfp", "--help"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == HELP
    assert "--bundle-store URI" in HELP and "-D, --dry-run" in HELP
    assert "Without --kfp only --parallelism, --cache,\n--no-cache and --resume (with --from " \
        "after it) are Kale's" in HELP


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
    expected = list(user)
    if "--" in expected:
        expected.remove("--")  # the "--" Kale stopped at
    assert argv == ["script.py", *expected]


# Tokens a script might be given, many of them close to Kale's flags.
_ANY_TOKENS = st.one_of(
    st.sampled_from(["--output", "-o", "--image", "--dry-run", "-D", "--wait", "--namespace",
                     "--dry", "-d", "-k", "-dry-run", "\u2014dry-run", "--kfp=1", "--KFP", "-kfp",
                     "-oFILE", "-DK", "--", "-", "--help", "-h", "--kfp-host=h", "-O"]),
    st.text(alphabet="abcoKDkd-_=\u2013\u2014", max_size=8))


def _turns_on_kfp(token: str) -> bool:
    """--kfp, or -K alone or combined with Kale's other short flags (-KD, -DKo FILE)."""
    return token == "--kfp" or re.fullmatch(r"-[KD]*K[KD]*(o.*)?", token, re.DOTALL) is not None


@given(tokens=st.lists(_ANY_TOKENS, max_size=10))
def test_without_kales_flags_kale_takes_nothing(tokens):
    stop = tokens.index("--") if "--" in tokens else len(tokens)
    assume(not any(_squash(token.split("=")[0].lstrip("-\u2013\u2014")) == "kfp"
                   and token.split("=")[0] not in ("--kfp", "-K") for token in tokens[:stop]))
    assume(not any(_turns_on_kfp(token) or token.split("=")[0] == "--parallelism"
                   for token in tokens[:stop]))
    argv = ["script.py", *tokens]
    assert take_flags(argv) == Flags()
    assert argv == ["script.py", *tokens]


def _squash(text: str) -> str:
    return re.sub("[-_\u2010-\u2015\u2212]", "", text.lower())


@st.composite
def _mangled(draw: st.DrawFn) -> tuple[str, str]:
    """One of Kale's long flags and a plausible mistyping of it."""
    flag = draw(st.sampled_from(_LONG))
    body = flag[2:]
    if flag == "--dry-run":  # the one abbreviation that would submit for real
        body = body[: draw(st.integers(1, len(body)))]
    body = "".join(char.upper() if draw(st.booleans()) else char for char in body)
    body = body.replace("-", draw(st.sampled_from(["-", "_", "", "\u2013"])))
    dashes = draw(st.sampled_from(["--", "-", "---", "\u2014", "\u2013", "\u2013\u2013",
                                   "\u2212-"]))
    mangled = dashes + body + draw(st.sampled_from(["", "=x"]))
    assume(mangled.split("=")[0] not in _LONG)  # the flag itself, exactly
    assume(not (dashes == "-" and len(body) == 1))  # a short flag (-o, -D) or another letter
    return flag, mangled


@given(case=_mangled())
def test_a_mistyped_long_flag_never_reaches_the_script_with_kfp(case):
    flag, mangled = case
    with pytest.raises(FlagError) as caught:
        take_flags(["script.py", "--kfp", mangled])
    named = caught.value.fix.split("?")[0].removeprefix("did you mean ").split(" or ")
    name = mangled.split("=")[0]
    body = name.lstrip("-\u2013\u2014\u2212")
    if len(body) == 1 and len(name) == 2 and body.upper() in "KDO":
        flag = {"K": "-K", "D": "-D", "O": "-o"}[body.upper()]  # a pasted dash, a short flag
    else:
        # An abbreviation that is another flag in full (--kfp of --kfp-host) names that one.
        flag = next((other for other in _LONG if _squash(other) == _squash(body)), flag)
    assert flag in named
    argv = ["script.py", "--kfp", "--", mangled]
    take_flags(argv)
    assert argv == ["script.py", mangled]


_OWN_FLAGS_SCRIPT = '''
import argparse
import sys

from kale.sdk import pipeline, step


@step
def show(x):
    print("STEP GOT", x)


@pipeline(name="own-flags")
def own_flags(x="d"):
    show(x)


if __name__ == "__main__":
    print("ARGV", sys.argv[1:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--output")
    parser.add_argument("--image")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    own_flags(x=f"{args.output}|{args.image}|{args.dry_run}")
'''


def _run_script(tmp_path, *arguments):
    path = tmp_path / "own.py"
    path.write_text(_OWN_FLAGS_SCRIPT)
    return subprocess.run([sys.executable, str(path), *arguments], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120,
                          env={**os.environ, "KALE_HOME": str(tmp_path / "home"),
                               "KALE_PROGRESS": "plain", "KALE_PRESTART": "0"})


def test_a_scripts_own_flags_reach_it_end_to_end(tmp_path):
    local = _run_script(tmp_path, "--output", "report.csv", "--image", "cat.png", "--dry-run")
    assert local.returncode == 0, local.stderr
    assert "ARGV ['--output', 'report.csv', '--image', 'cat.png', '--dry-run']" in local.stdout
    assert "STEP GOT report.csv|cat.png|True" in local.stdout
    escaped = _run_script(tmp_path, "--parallelism", "1", "--", "--output", "report.csv")
    assert escaped.returncode == 0, escaped.stderr
    assert "ARGV ['--output', 'report.csv']" in escaped.stdout
    compiled = _run_script(tmp_path, "--kfp", "--dry-run", "-o", "p.yaml", "--",
                           "--output", "report.csv")
    assert compiled.returncode == 0, compiled.stderr
    assert "ARGV ['--output', 'report.csv']" in compiled.stdout
    assert (tmp_path / "p.yaml").exists() and not (tmp_path / "report.csv").exists()
    mistyped = _run_script(tmp_path, "--kfp", "--dry")
    assert mistyped.returncode == 2 and "did you mean --dry-run?" in mistyped.stderr
    assert "ARGV" not in mistyped.stdout


def test_with_kfp_common_flags_of_scripts_stay_theirs():
    argv = ["script.py", "--kfp", "--name", "exp1", "--out", "r.csv", "--w", "3"]
    assert take_flags(argv) == Flags(kfp=True)
    assert argv == ["script.py", "--name", "exp1", "--out", "r.csv", "--w", "3"]


@pytest.mark.parametrize("argument", ["--KFP", "-kfp", "\u2014kfp", "--Kfp", "---kfp"])
def test_a_mistyped_kfp_is_an_error_rather_than_a_local_run(argument):
    with pytest.raises(FlagError) as caught:
        take_flags(["script.py", argument])
    assert "--kfp" in caught.value.fix


def test_cache_flags_are_kales_in_both_modes():
    argv = ["s.py", "--cache", "--name", "x"]
    assert take_flags(argv).cache is True and argv == ["s.py", "--name", "x"]
    argv = ["s.py", "--kfp", "--no-cache", "--dry-run"]
    flags = take_flags(argv)
    assert flags.cache is False and flags.kfp and argv == ["s.py"]
    assert take_flags(["s.py"]).cache is None
    argv = ["s.py", "--", "--cache"]  # after --, the script's
    assert take_flags(argv).cache is None and argv == ["s.py", "--", "--cache"]


@pytest.mark.parametrize(("argv", "message"), [
    (["s.py", "--cache", "--no-cache"], "--cache and --no-cache are both given"),
    (["s.py", "--cache=yes"], "--cache takes no value"),
    (["s.py", "--kfp", "--no_cache"], "--no_cache is not one of Kale's flags"),
])
def test_bad_cache_flags_are_explained(argv, message):
    with pytest.raises(FlagError) as raised:
        take_flags(argv)
    assert message in str(raised.value) and raised.value.fix


@pytest.mark.parametrize(("argv", "resume", "from_step", "left"), [
    (["s.py", "--resume"], "", None, ["s.py"]),
    (["s.py", "--resume", "1a2b3c4d", "x"], "1a2b3c4d", None, ["s.py", "x"]),
    (["s.py", "--resume", "3a8d06aa-2689-41d3-baef-a6f044788840"],
     "3a8d06aa-2689-41d3-baef-a6f044788840", None, ["s.py"]),
    (["s.py", "--resume=beef"], "beef", None, ["s.py"]),
    # Not a run id: the script's own argument.
    (["s.py", "--resume", "data.csv"], "", None, ["s.py", "data.csv"]),
    (["s.py", "--resume", "--from", "train", "y"], "", "train", ["s.py", "y"]),
    (["s.py", "--from=train", "--resume"], "", "train", ["s.py"]),
    # Without --resume, --from is the script's.
    (["s.py", "--from", "train"], None, None, ["s.py", "--from", "train"]),
    (["s.py", "--", "--resume"], None, None, ["s.py", "--", "--resume"]),
])
def test_resume_and_from(argv, resume, from_step, left):
    flags = take_flags(argv)
    assert (flags.resume, flags.from_step, argv) == (resume, from_step, left)
    assert flags.caching is None


def test_resume_on_kubeflow_is_a_cached_run():
    flags = take_flags(["s.py", "--kfp", "--resume"])
    assert flags.resume == "" and flags.caching is True


@pytest.mark.parametrize(("argv", "message"), [
    (["s.py", "--resume", "--from"], "--from needs a value"),
    (["s.py", "--resume", "--resume"], "--resume is given twice"),
    (["s.py", "--resume=", "x"], "--resume needs a value"),
    (["s.py", "--kfp", "--resume", "--from", "a"], "--from is not available with --kfp"),
    (["s.py", "--kfp", "--resume", "--no-cache"], "--resume and --no-cache are both given"),
])
def test_resume_mistakes_are_explained(argv, message):
    with pytest.raises(FlagError) as caught:
        take_flags(argv)
    assert message in caught.value.message and caught.value.fix


@pytest.mark.parametrize(("args", "kept"), [
    (["run", "nb.ipynb", "--resume"], ["run", "nb.ipynb"]),
    (["--resume", "1a2b3c4d", "x", "--from", "train", "-p", "a=1"], ["x", "-p", "a=1"]),
    (["--resume=1a2b", "--from=train", "--cache"], ["--cache"]),
    (["--from", "train", "data.csv"], ["--from", "train", "data.csv"]),  # the script's --from
    (["--resume", "data.csv", "--", "--resume"], ["data.csv", "--", "--resume"]),
])
def test_without_resume_keeps_the_rest(args, kept):
    assert without_resume(args) == kept
