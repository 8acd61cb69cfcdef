"""The ``kale`` command: ``kale graph script.py`` shows a pipeline's DAG without running it."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from kale import __version__
from kale.errors import KaleError, install_excepthook
from kale.local.progress import local_time, took


class KaleGroup(click.Group):
    """Shows Kale errors compactly (no traceback) with their own exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KaleError as error:
            import os

            if os.environ.get("KALE_DEBUG"):
                raise
            click.echo(error.render(), err=True)
            ctx.exit(error.exit_code)


install_excepthook()  # Kale's warnings as "warning: ..." in every command


@click.group(cls=KaleGroup, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.version_option(__version__, prog_name="kale")
# Open-source Kale's command line: `kale --nb NOTEBOOK.ipynb [--upload_pipeline] ...`.
@click.option("--nb", metavar="NOTEBOOK", help="Open-source Kale's form: compile this tagged "
              "notebook to a package in .kale/ beside it (see `kale run` to run one).")
@click.option("--upload_pipeline", is_flag=True, help="With --nb: upload the package too.")
@click.option("--run_pipeline", is_flag=True, help="With --nb: upload it and start a run.")
@click.option("--kfp_host", metavar="URL", help="With --nb: the Kubeflow Pipelines endpoint.")
@click.option("--experiment_name", metavar="NAME", help="With --nb: the run's experiment.")
@click.option("--pipeline_name", metavar="NAME", help="With --nb: the pipeline's name.")
@click.option("--pipeline_description", metavar="TEXT", help="With --nb: its description.")
@click.option("--docker_image", metavar="IMAGE", help="With --nb: the steps' image.")
@click.option("--debug", is_flag=True, hidden=True)  # open-source Kale's; tracebacks: KALE_DEBUG
@click.pass_context
def main(ctx: click.Context, nb: str | None, upload_pipeline: bool, run_pipeline: bool,
         **overrides: Any) -> None:
    """Kale turns plain Python functions into Kubeflow Pipelines.

    Run a pipeline script locally with `python script.py`, a tagged notebook with `kale run
    NOTEBOOK.ipynb`; use these commands to inspect them.
    """
    overrides.pop("debug", None)
    given = [f"--{name}" for name, value in overrides.items() if value] + \
        [flag for flag, on in (("--upload_pipeline", upload_pipeline),
                               ("--run_pipeline", run_pipeline)) if on]
    if nb is None:
        if given:
            raise click.UsageError(f"{given[0]} is an option of --nb NOTEBOOK.ipynb")
        if ctx.invoked_subcommand is None:
            click.echo(ctx.get_help())
        return
    if ctx.invoked_subcommand is not None:
        raise click.UsageError("--nb compiles a notebook; give it without a command")
    from kale.notebook.commands import kale_nb

    kale_nb(nb, upload_pipeline=upload_pipeline, run_pipeline=run_pipeline,
            overrides=overrides)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []})
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def run(notebook: str, arguments: tuple[str, ...]) -> None:
    """Run the pipeline of a tagged Jupyter NOTEBOOK (open-source Kale's tags), as `python
    script.py` runs a script's: locally, or with --kfp on Kubeflow (every flag of a script:
    --kfp --dry-run -o FILE, --kfp-host URL, --wait...). Parameters: -p NAME=VALUE.
    """
    from kale.notebook.commands import is_notebook, run_notebook

    if notebook in ("-h", "--help"):
        click.echo(click.get_current_context().get_help())
        return
    if not is_notebook(notebook):
        from kale.loader import ScriptError

        raise ScriptError(f"{notebook} is not a notebook (.ipynb)",
                          fix=f"run a pipeline script with `python {notebook}`")
    # A failed local run raises RunFailedError (shown by KaleGroup, status 1), as a script's.
    run_notebook(notebook, list(arguments))


def _pick_pipeline(module: Any, script: str, name: str | None) -> Any:
    from kale.loader import ScriptError
    from kale.sdk import PipelineFunction

    found = {
        value.__name__: value
        for value in vars(module).values()
        if isinstance(value, PipelineFunction)
    }
    if not found:
        raise ScriptError(f"{script} defines no @pipeline function",
                          fix="decorate the function that calls the steps with @pipeline "
                          "(from kale.sdk import pipeline)")
    described = ", ".join(f"{function} ({value.options.name})" if function !=
                          value.options.name else function for function, value in found.items())
    if name is None:
        if len(found) > 1:
            raise ScriptError(f"{script} defines {len(found)} pipelines: {described}",
                              fix="choose one with --pipeline NAME")
        return next(iter(found.values()))
    matches = [value for function, value in found.items()
               if name in (function, value.options.name, value.options.display_name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ScriptError(f"{len(matches)} pipelines of {script} are named {name!r}",
                          fix="choose one by its function's name: " + described)
    raise ScriptError(f"{script} has no pipeline named {name!r}",
                      fix=f"its pipelines are: {described}")


def _load(script: str, pipeline_name: str | None) -> Any:
    """The pipeline of a script, or of a tagged notebook (its one pipeline)."""
    from kale.notebook.commands import is_notebook, notebook_pipeline

    if is_notebook(script):
        return notebook_pipeline(script)
    from kale.loader import load_script

    return _pick_pipeline(load_script(script), script, pipeline_name)


@main.command()
@click.argument("script", type=click.Path(dir_okay=False))
@click.option("-f", "--format", "output_format", default="text", show_default=True,
              type=click.Choice(["text", "mermaid", "dot", "json"]),
              help="text for reading, mermaid or dot for drawing, json for tools.")
@click.option("-p", "--pipeline", "pipeline_name", metavar="NAME",
              help="The pipeline to show, when the script defines several.")
def graph(script: str, output_format: str, pipeline_name: str | None) -> None:
    """Show the DAG of the pipeline in SCRIPT: steps, edges, parameters and options.

    Nothing runs: the pipeline body is read, not executed, and every mistake in the pipeline
    or its steps is reported with file, line and fix.
    """
    from kale.graph.render import RENDERERS

    click.echo(RENDERERS[output_format](_load(script, pipeline_name).graph))


@main.command(name="compile")
@click.argument("script", type=click.Path(dir_okay=False))
@click.option("-o", "--output", metavar="FILE", help="Where to write the package "
              "(default: <pipeline name>.yaml here).")
@click.option("-p", "--pipeline", "pipeline_name", metavar="NAME",
              help="The pipeline to compile, when the script defines several.")
@click.option("--image", metavar="IMAGE", help="The steps' base image (default: KALE_IMAGE, "
              "[tool.kale] image, else python:<local version>).")
@click.option("--requirements", metavar="FILE", type=click.Path(dir_okay=False),
              help="A requirements file for the steps (default: see the README).")
@click.option("--bundle-store", metavar="URI", help="Upload a project bundle too big for the "
              "package here (minio://, s3://, gs:// or a folder); without it nothing is "
              "contacted.")
@click.option("--no-install", is_flag=True, help="Steps install nothing: the --image holds kfp "
              "and their packages.")
@click.option("--server-version", metavar="X.Y.Z", help="The Kubeflow Pipelines release to "
              "compile for (default: the newest; the message names the oldest that runs it).")
def compile_command(script: str, output: str | None, pipeline_name: str | None,
                    image: str | None, requirements: str | None,
                    bundle_store: str | None, no_install: bool,
                    server_version: str | None) -> None:
    """Compile the pipeline in SCRIPT to a Kubeflow Pipelines (v2) package."""
    from kale.kfp.compiler import compile_graph, describe
    from kale.kfp.server import NEWEST, Target, check_version_flag
    from kale.kfp.submit import package_path

    target = NEWEST if not server_version else Target(
        check_version_flag(server_version), "--server-version", server_version)
    chosen = _load(script, pipeline_name)
    path = package_path(chosen.graph, output)
    compiled = compile_graph(chosen.graph, path, image=image, requirements=requirements,
                             bundle_store=bundle_store, upload=bool(bundle_store),
                             target=target, install=False if no_install else None)
    click.echo(describe(chosen.graph, compiled, path))


def _home(home: str | None) -> Any:
    from pathlib import Path

    from kale.local.record import kale_home

    return Path(home).resolve() if home else kale_home()


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _status(run: dict[str, Any]) -> str:
    from kale.local.record import RUNNER_GONE

    return f"{run['status']} ({RUNNER_GONE})" if run.get("runner_gone") else run["status"]


#: Outputs stored as JSON up to this size have their value shown by `kale show`.
SMALL_OUTPUT = 1024


def _small_value(stored: dict[str, Any], folder: str) -> str | None:
    """A small output's value, as Python shows it (cut to a line), or None."""
    if stored.get("backend") != "json" or not isinstance(stored.get("size"), int) or \
            stored["size"] > SMALL_OUTPUT:
        return None
    from kale import marshal

    try:
        value = marshal.load(stored, store=folder)
    except Exception:
        return None
    return _cell(value, 200)


_HOME_OPTION = click.option("--home", metavar="DIR", help="Where run records are: "
                            "default $KALE_HOME, else ./.kale")


def _cell(value: Any, width: int = 24) -> str:
    """A parameter's or metric's value in a table cell: numbers as ``kale.logs`` prints them,
    strings bare, the rest as Python shows them; cut to ``width``."""
    from kale.logs import metric_text

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = metric_text(value)
    else:
        text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


@main.command()
@_HOME_OPTION
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
@click.option("-p", "--pipeline", "pipeline_name", metavar="NAME",
              help="Only the runs of this pipeline.")
@click.option("-s", "--study", "study_id", metavar="STUDY",
              help="Only the trials of this study (its id or the start of it).")
def runs(home: str | None, limit: int, pipeline_name: str | None,
         study_id: str | None) -> None:
    """List local runs, newest first, with their parameters and metrics (when the runs listed
    are of one pipeline: --pipeline NAME, or the trials of a study: --study ID)."""
    from kale.local.record import list_runs, run_metrics

    folder = _home(home)
    found = list_runs(folder)
    if pipeline_name is not None:
        found = [run for run in found if run.get("pipeline") == pipeline_name]
    if study_id is not None:
        study = _find_study(folder, study_id)
        found = sorted((run for run in found if (run.get("study") or {}).get("id") ==
                        study["id"]), key=lambda run: (run.get("study") or {}).get("trial", 0))
    if not found:
        click.echo(f"no runs of pipeline {pipeline_name!r} in {folder}" if pipeline_name
                   else f"no runs in {folder}")
        return
    shown = found[:limit]
    pipelines = {run.get("pipeline") for run in shown}
    parameters: list[str] = []
    metrics: list[str] = []
    values = []
    if len(pipelines) == 1:
        for run in shown:
            logged = run_metrics(run)
            values.append(logged)
            parameters.extend(name for name in run.get("parameters") or {}
                              if name not in parameters)
            metrics.extend(name for name in logged if name not in metrics)
    trials = any(run.get("study") for run in shown)
    rows = [("run", *(("trial",) if trials else ()), "pipeline", "experiment", "status",
             "started", "duration", *parameters, *metrics)]
    for index, run in enumerate(shown):
        given = run.get("parameters") or {}
        logged = values[index] if values else {}
        tag = run.get("study") or {}
        trial = (f"{str(tag.get('id'))[:8]}#{tag.get('trial')}" if tag else "-",) if trials \
            else ()
        rows.append((run["id"][:8], *trial, run["pipeline"], run.get("experiment") or "-",
                     _status(run), local_time(run.get("started")), took(run.get("duration")),
                     *(_cell(given[name]) if name in given else "-" for name in parameters),
                     *(_cell(logged[name]) if name in logged else "-" for name in metrics)))
    click.echo(_table(rows))
    if len(pipelines) > 1:
        click.echo("\n(runs of several pipelines: `kale runs --pipeline NAME` shows one's "
                   "parameters and metrics)")


def _find_study(folder: Any, study_id: str) -> dict[str, Any]:
    from kale.loader import ScriptError
    from kale.tuning.study import find_study

    found = find_study(folder, study_id)
    if isinstance(found, list):
        raise ScriptError(f"no study {study_id!r} in {folder}" if not found else
                          f"{study_id!r} matches {len(found)} studies: {', '.join(found)}",
                          fix="give more of the study id" if found else
                          "`kale show STUDY` shows one; studies are under .kale/studies/")
    return found


def _show_study(study: dict[str, Any]) -> None:
    """``kale show STUDY``: its settings, the trials table and the best trial."""
    from kale.tuning.study import space_text, trials_table, value_text

    settings = study.get("settings") or {}
    click.echo(f"study {study['id']}\npipeline {study.get('pipeline')}")
    click.echo(f"status {study.get('status')}" + (f": {study['reason']}"
                                                  if study.get("reason") else ""))
    click.echo(f"{study.get('goal')} {study.get('objective')} with {study.get('algorithm')}, "
               f"{settings.get('max_trials')} trials, {settings.get('parallel_trials')} at a "
               f"time, at most {settings.get('max_failed_trials')} failed")
    click.echo(f"started {local_time(study.get('started'))}\nrecord {study['folder']}")
    click.echo("\nspace")
    for name, entry in (settings.get("space") or {}).items():
        click.echo(f"  {name}: {space_text(entry)}")
    click.echo("\n" + trials_table(study))
    best = study.get("best")
    if best:
        click.echo(f"\nbest: {study.get('objective')}={value_text(best['value'])} at trial "
                   f"{best['trial']}: " + ", ".join(f"{k}={value_text(v)}" for k, v in
                                                   best["parameters"].items()))
    click.echo(f"\n(each trial's run: `kale runs --study {study['id'][:8]}`, `kale show RUN`)")


def _find(folder: Any, run_id: str) -> dict[str, Any]:
    from kale.loader import ScriptError
    from kale.local.record import find_run

    found = find_run(folder, run_id)
    if isinstance(found, list):
        if not found:
            raise ScriptError(f"no run {run_id!r} in {folder}",
                              fix="`kale runs` lists the runs (use --home for another folder)")
        raise ScriptError(f"{run_id!r} matches {len(found)} runs: {', '.join(found)}",
                          fix="give more of the run id")
    return found


@main.command()
@click.argument("run_ids", metavar="RUN...", nargs=-1, required=True)
@_HOME_OPTION
@click.option("-d", "--diff", "only_differences", is_flag=True,
              help="Show only the parameters and metrics that differ.")
def compare(run_ids: tuple[str, ...], home: str | None, only_differences: bool) -> None:
    """Put local runs side by side (RUN: an id or the start of one): status, duration,
    parameters and metrics; `*` marks what differs between them."""
    from kale.loader import ScriptError
    from kale.local.record import run_metrics

    if len(run_ids) < 2:
        raise ScriptError("`kale compare` compares two runs or more",
                          fix="give the ids (or their starts) of two runs or more; "
                          "`kale runs` lists them")
    folder = _home(home)
    chosen = [_find(folder, run_id) for run_id in run_ids]
    ids = [run["id"] for run in chosen]
    if len(set(ids)) < len(ids):
        raise ScriptError("a run is named twice", fix="give each run once")
    logged = [run_metrics(run) for run in chosen]
    names: dict[str, list[str]] = {"parameter": [], "metric": []}
    for run, metrics in zip(chosen, logged, strict=True):
        names["parameter"].extend(name for name in run.get("parameters") or {}
                                  if name not in names["parameter"])
        names["metric"].extend(name for name in metrics if name not in names["metric"])
    missing = object()
    lines: list[tuple[str, list[Any]]] = [
        ("pipeline", [run.get("pipeline") for run in chosen]),
        ("status", [_status(run) for run in chosen]),
        ("started", [local_time(run.get("started")) for run in chosen]),
        ("duration", [took(run.get("duration")) for run in chosen]),
        *((f"parameter {name}", [(run.get("parameters") or {}).get(name, missing)
                                 for run in chosen]) for name in names["parameter"]),
        *((f"metric {name}", [metrics.get(name, missing) for metrics in logged])
          for name in names["metric"]),
    ]
    rows = [("", *(run_id[:8] for run_id in ids), "")]
    hidden = 0
    for label, cells in lines:
        differs = any(cell != cells[0] for cell in cells[1:]) and \
            label not in ("started", "duration")
        if not differs and only_differences and label.startswith(("parameter", "metric")):
            hidden += 1
            continue
        rows.append((label, *("-" if cell is missing else _cell(cell) for cell in cells),
                     "*" if differs else ""))
    click.echo(_table(rows))
    click.echo("\n* differs between the runs" + (
        f"; {hidden} parameter and metric row{'s' if hidden != 1 else ''} alike in every run "
        "left out" if hidden else ""))


@main.command()
@click.argument("run_id", metavar="RUN")
@_HOME_OPTION
@click.option("--logs", is_flag=True, help="Print every attempt's log too.")
def show(run_id: str, home: str | None, logs: bool) -> None:
    """Show one local run (RUN: its id or the start of it): steps, parameters, outputs, logs;
    or a study (its id): its trials and the best."""
    from pathlib import Path

    from kale.local.progress import final_state, task_rows
    from kale.local.record import find_run, task_artifacts, task_metrics

    folder = _home(home)
    if find_run(folder, run_id) == []:
        from kale.tuning.study import find_study

        study = find_study(folder, run_id)
        if isinstance(study, dict):
            _show_study(study)
            return
    run = _find(folder, run_id)
    tag = run.get("study")
    click.echo(f"run {run['id']}\npipeline {run['pipeline']}"
               + (f" (experiment {run['experiment']})" if run.get("experiment") else ""))
    reason = run.get("reason") or ""
    if run.get("runner_gone"):  # the reason starts with "runner gone", said by _status already
        reason = reason.partition(": ")[2]
    click.echo(f"status {_status(run)}" + (f": {reason}" if reason else ""))
    click.echo(f"started {local_time(run.get('started'))}, took {took(run.get('duration'))}")
    click.echo(f"record {run['folder']}")
    if run.get("resumed_from"):
        click.echo(f"resumed run {run['resumed_from']}"
                   + (f", from step {run['from_step']} on" if run.get("from_step") else ""))
    if tag:
        click.echo(f"trial {tag.get('trial')} of study {tag.get('id')}")
    if run.get("parameters"):
        click.echo("\nparameters")
        for name, value in run["parameters"].items():
            click.echo(f"  {name} = {value!r}")
    tasks = []
    for name, step in run["steps"].items():
        spans = [a["duration"] for a in step["attempts"] if a.get("duration") is not None]
        tasks.append({"name": name, "step": step.get("step", name),
                      "index": step.get("index", ()), "status": step["status"],
                      "by_condition": step.get("by_condition", False),
                      "attempts": len(step["attempts"]),
                      "duration": sum(spans) if spans else None})
    rows = [("step", "status", "attempts", "duration"), *task_rows(tasks, run.get("order", ()))]
    click.echo("\n" + _table(rows))
    metrics = task_metrics(run)
    if metrics:
        click.echo("\nmetrics")
        retried = {task for task, number, _, _ in metrics if number > 1}
        rows = [("step", "metric", "value"), *(
            (task + (f" (attempt {number})" if task in retried else ""), name, _cell(value, 40))
            for task, number, name, value in metrics)]
        click.echo("\n".join("  " + line for line in _table(rows).splitlines()))
    artifacts = task_artifacts(run)
    if artifacts:
        click.echo("\nartifacts")
        for task, number, name, entry in artifacts:
            kind = entry.get("kind", "?") if entry.get("kind") != "file" else \
                f"html, from {entry.get('source', '?')}"
            click.echo(f"  {task} {name} ({kind}"
                       + (f", attempt {number}" if number > 1 else "") + f") {entry['path']}")
    position = {name: number for number, name in enumerate(run.get("order", ()))}
    for name, step in sorted(run["steps"].items(), key=lambda item: (
            position.get(item[1].get("step", item[0]), -1), tuple(item[1].get("index", ())))):
        details = []
        for output, stored in step.get("outputs", {}).items():
            details.append(f"  output {output}: {stored['type']} ({stored['backend']}, "
                           f"{stored['size']} bytes) {stored['path']}")
            shown = _small_value(stored, run["folder"])
            if shown is not None:
                details.append(f"    = {shown}")
            if stored.get("fallback"):
                details.append(f"    stored with {stored['backend']} because "
                               f"{stored['fallback']}")
        for attempt in step["attempts"]:
            line = f"  attempt {attempt['number']}: {attempt['status']}"
            if attempt.get("waited"):
                line += f" after waiting {attempt['waited']:g}s"
            if attempt.get("error"):
                line += f": {attempt['error'].get('message', '')}"
            details.append(line + f"\n    log {attempt['log']}")
            if logs and Path(attempt["log"]).exists():
                # Bytes: reading text would turn each "\r" of a progress bar into a line.
                text = Path(attempt["log"]).read_bytes().decode(errors="replace").rstrip()
                rows = text.replace("\r\n", "\n").split("\n") if text else []
                details.extend("    | " + final_state(row) for row in rows)
            trace = (attempt.get("error") or {}).get("traceback")
            if trace:
                details.extend("    " + row for row in trace.splitlines())
        source = step.get("cached_from")
        if step["status"] == "cached" and isinstance(source, dict):
            made = f", made {local_time(_iso(source.get('created')))}" if source.get("created") \
                else ""
            spent = f" in {took(source['duration'])}" if source.get("duration") else ""
            task = f" (task {source['task']})" if source.get("task") not in (None, name) else ""
            how = "reused" if source.get("resumed") else "cached"
            details.insert(0, f"  {how}: outputs of run {source.get('run')}{task}{made}{spent}")
        if step.get("reason") and step["status"] not in ("succeeded", "cached"):
            details.insert(0, f"  {step['status']}: {step['reason']}")
        if step.get("reports", {}).get("branch") is not None:
            # The reason says what the branch is (`runs `elif x > 1``); older records hold
            # the index alone.
            chose = step.get("reason") if step["status"] in ("succeeded", "cached") else None
            details.insert(0, f"  {chose}" if chose else
                           f"  chose branch {step['reports']['branch']}")
        if details:
            click.echo(f"\n{name}")
            click.echo("\n".join(details))


@main.command()
@click.argument("run_id", metavar="RUN")
@click.option("--from", "from_step", metavar="STEP",
              help="Run STEP and every step after it again, whatever RUN holds.")
@_HOME_OPTION
def resume(run_id: str, from_step: str | None, home: str | None) -> None:
    """Continue a local run (RUN: its id or the start of it): start its script again, as it
    was started, with --resume RUN. What succeeded in RUN and is unchanged is reused; the
    rest runs."""
    import subprocess
    from pathlib import Path

    from kale.loader import ScriptError

    run = _find(_home(home), run_id)
    short = run["id"][:8]
    command = run.get("command")
    if not isinstance(command, dict) or not isinstance(command.get("script"), str):
        raise ScriptError(
            f"run {short} was not started by a script (a notebook, an interactive session or "
            "an older Kale), so `kale resume` cannot start it again",
            fix=f"where you ran it, call the pipeline's run(resume={short!r}), or run its "
            f"script with --resume {short}")
    script = Path(command["script"])
    if not script.is_file():
        raise ScriptError(f"the script of run {short}, {script}, is not there any more",
                          fix=f"run the script where it is now with --resume {short}")
    python = command.get("python")
    if not isinstance(python, str) or not Path(python).is_file():
        python = sys.executable
    from kale.flags import without_resume

    # The run may itself have been resumed: its --resume and --from are not this one's.
    args = without_resume([str(arg) for arg in command.get("args") or []])
    # After the script's own arguments (`kale run NOTEBOOK` takes its subcommand first), before
    # a `--` that would hand them to the script.
    at = args.index("--") if "--" in args else len(args)
    args[at:at] = [f"--resume={run['id']}", *([f"--from={from_step}"] if from_step else [])]
    argv = [python, str(script), *args]
    cwd = command.get("cwd")
    environment = dict(os.environ)
    # The new run goes where RUN is, and finds it there, wherever this command was started.
    environment["KALE_HOME"] = str(Path(run["folder"]).parent.parent)
    click.echo(f"kale resume: {' '.join(argv[1:])}", err=True)
    process = subprocess.Popen(argv, cwd=cwd if isinstance(cwd, str) and os.path.isdir(cwd)
                               else None, env=environment)
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:  # the script has it too (same terminal): let it end its run
            continue
    raise SystemExit(code)


@main.command()
@click.option("--port", default=8765, show_default=True, help="The port to listen on "
              "(0: a free one).")
@_HOME_OPTION
def ui(port: int, home: str | None) -> None:
    """Browse local runs in a web browser: a read-only UI on 127.0.0.1 (Ctrl-C stops it)."""
    from kale.loader import ScriptError
    from kale.ui import make_server

    folder = _home(home)
    try:
        server = make_server(folder, port)
    except OSError as error:
        raise ScriptError(f"the UI cannot listen on 127.0.0.1:{port}: {error.strerror}",
                          fix="choose another port with --port N (0 picks a free one)") from None
    click.echo(f"kale ui: http://127.0.0.1:{server.server_address[1]}/ (runs in {folder}; "
               "Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _iso(stamp: Any) -> str | None:
    from datetime import datetime, timezone

    if not isinstance(stamp, (int, float)):
        return None
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat()


@main.group(name="cache", invoke_without_command=True)
@_HOME_OPTION
@click.option("-n", "--limit", default=20, show_default=True,
              help="How many entries to list (most recently used first).")
@click.pass_context
def cache_command(ctx: click.Context, home: str | None, limit: int) -> None:
    """Show the step cache: where it is, its size and cap, and its entries.

    `kale cache clear` empties it (`--older-than 7d`: only entries not used for a week).
    """
    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    if ctx.invoked_subcommand is not None:
        return
    import os

    from kale.cache import Store, cache_folder, format_size, read_settings

    folder = cache_folder(_home(home))
    store = Store(folder)
    entries = store.entries()
    count, size = store.usage()
    cap = read_settings(os.getcwd())["max_size"]
    click.echo(f"cache {folder}\n{count} entr{'y' if count == 1 else 'ies'}, "
               f"{format_size(size)} of {format_size(cap)} (max_size in [tool.kale.cache])")
    if not entries:
        return
    rows = [("step", "pipeline", "size", "last used", "made by run", "saves")]
    for entry in reversed(entries[-limit:] if limit > 0 else entries):
        source = entry.source()
        rows.append((str(source.get("task") or "?"), str(source.get("pipeline") or "-"),
                     format_size(entry.size), local_time(_iso(entry.last_used)),
                     str(source.get("run") or "-")[:8], took(source.get("duration"))))
    click.echo("\n" + _table(rows))
    if limit > 0 and len(entries) > limit:
        click.echo(f"... and {len(entries) - limit} more (--limit N)")


@cache_command.command(name="clear")
@click.option("--older-than", "older_than", metavar="AGE",
              help="Only entries not used for this long: 7d, 12h, 30m, or seconds.")
@click.pass_context
def cache_clear(ctx: click.Context, older_than: str | None) -> None:
    """Remove the cache's entries (all, or those not used for --older-than AGE)."""
    from kale.cache import Store, cache_folder, format_size

    seconds = None
    if older_than is not None:
        from kale.errors import InvalidOptionError
        from kale.options import parse_duration

        try:
            seconds = parse_duration(older_than, "--older-than", allow_zero=True)
        except InvalidOptionError:
            raise KaleError(f"--older-than {older_than!r} is not an age",
                            fix="write a number of seconds, or a number and a unit: "
                            "--older-than 7d (days), 12h, 30m, 90s") from None
    folder = cache_folder(_home((ctx.obj or {}).get("home")))
    removed, freed = Store(folder).clear(seconds)
    which = f" not used for {older_than}" if older_than is not None else ""
    click.echo(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}{which} from "
               f"{folder}, freeing {format_size(freed)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
