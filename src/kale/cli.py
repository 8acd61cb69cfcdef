"""The ``kale`` command: ``kale graph script.py`` shows a pipeline's DAG without running it."""

from __future__ import annotations

import sys
from typing import Any

import click

from kale import __version__
from kale.errors import KaleError, install_excepthook


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


@click.group(cls=KaleGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kale")
def main() -> None:
    """Kale turns plain Python functions into Kubeflow Pipelines.

    Run a pipeline script locally with `python script.py`; use these commands to inspect it.
    """


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
    from kale.loader import load_script

    module = load_script(script)
    chosen = _pick_pipeline(module, script, pipeline_name)
    click.echo(RENDERERS[output_format](chosen.graph))


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
def compile_command(script: str, output: str | None, pipeline_name: str | None,
                    image: str | None, requirements: str | None,
                    bundle_store: str | None) -> None:
    """Compile the pipeline in SCRIPT to a Kubeflow Pipelines (v2) package."""
    from kale.kfp.compiler import compile_graph, describe
    from kale.kfp.submit import package_path
    from kale.loader import load_script

    module = load_script(script)
    chosen = _pick_pipeline(module, script, pipeline_name)
    path = package_path(chosen.graph, output)
    compiled = compile_graph(chosen.graph, path, image=image, requirements=requirements,
                             bundle_store=bundle_store, upload=bool(bundle_store))
    click.echo(describe(chosen.graph, compiled, path))


def _home(home: str | None) -> Any:
    from pathlib import Path

    from kale.local.record import kale_home

    return Path(home).resolve() if home else kale_home()


def _when(stamp: str | None) -> str:
    from datetime import datetime

    if not stamp:
        return "-"
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _status(run: dict[str, Any]) -> str:
    from kale.local.record import RUNNER_GONE

    return f"{run['status']} ({RUNNER_GONE})" if run.get("runner_gone") else run["status"]


_HOME_OPTION = click.option("--home", metavar="DIR", help="Where run records are: "
                            "default $KALE_HOME, else ./.kale")


@main.command()
@_HOME_OPTION
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs to list.")
def runs(home: str | None, limit: int) -> None:
    """List local runs, newest first."""
    from kale.local.record import list_runs

    folder = _home(home)
    found = list_runs(folder)
    if not found:
        click.echo(f"no runs in {folder}")
        return
    rows = [("run", "pipeline", "experiment", "status", "started", "duration")]
    for run in found[:limit]:
        rows.append((run["id"][:8], run["pipeline"], run.get("experiment") or "-",
                     _status(run), _when(run.get("started")), _took(run.get("duration"))))
    click.echo(_table(rows))


@main.command()
@click.argument("run_id", metavar="RUN")
@_HOME_OPTION
@click.option("--logs", is_flag=True, help="Print every attempt's log too.")
def show(run_id: str, home: str | None, logs: bool) -> None:
    """Show one local run (RUN: its id or the start of it): steps, parameters, outputs, logs."""
    from pathlib import Path

    from kale.loader import ScriptError
    from kale.local.progress import final_state, task_rows
    from kale.local.record import find_run

    folder = _home(home)
    found = find_run(folder, run_id)
    if isinstance(found, list):
        if not found:
            raise ScriptError(f"no run {run_id!r} in {folder}",
                              fix="`kale runs` lists the runs (use --home for another folder)")
        raise ScriptError(f"{run_id!r} matches {len(found)} runs: {', '.join(found)}",
                          fix="give more of the run id")
    run = found
    click.echo(f"run {run['id']}\npipeline {run['pipeline']}"
               + (f" (experiment {run['experiment']})" if run.get("experiment") else ""))
    reason = run.get("reason") or ""
    if run.get("runner_gone"):  # the reason starts with "runner gone", said by _status already
        reason = reason.partition(": ")[2]
    click.echo(f"status {_status(run)}" + (f": {reason}" if reason else ""))
    click.echo(f"started {_when(run.get('started'))}, took {_took(run.get('duration'))}")
    click.echo(f"record {run['folder']}")
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
    position = {name: number for number, name in enumerate(run.get("order", ()))}
    for name, step in sorted(run["steps"].items(), key=lambda item: (
            position.get(item[1].get("step", item[0]), -1), tuple(item[1].get("index", ())))):
        details = []
        for output, stored in step.get("outputs", {}).items():
            details.append(f"  output {output}: {stored['type']} ({stored['backend']}, "
                           f"{stored['size']} bytes) {stored['path']}")
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
            made = f", made {_when(_iso(source.get('created')))}" if source.get("created") \
                else ""
            took = f" in {_took(source['duration'])}" if source.get("duration") else ""
            task = f" (task {source['task']})" if source.get("task") not in (None, name) else ""
            details.insert(0, f"  cached: outputs of run {source.get('run')}{task}{made}{took}")
        if step.get("reason") and step["status"] not in ("succeeded", "cached"):
            details.insert(0, f"  {step['status']}: {step['reason']}")
        if step.get("reports", {}).get("branch") is not None:
            details.insert(0, f"  chose branch {step['reports']['branch']}")
        if details:
            click.echo(f"\n{name}")
            click.echo("\n".join(details))


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
                     format_size(entry.size), _when(_iso(entry.last_used)),
                     str(source.get("run") or "-")[:8], _took(source.get("duration"))))
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
