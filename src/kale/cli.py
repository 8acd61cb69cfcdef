"""The ``kale`` command: ``kale graph script.py`` shows a pipeline's DAG without running it."""

from __future__ import annotations

import sys
from typing import Any

import click

from kale import __version__
from kale.errors import KaleError


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
        value.options.name: value
        for value in vars(module).values()
        if isinstance(value, PipelineFunction)
    }
    if not found:
        raise ScriptError(f"{script} defines no @pipeline function",
                          fix="decorate the function that calls the steps with @pipeline "
                          "(from kale.sdk import pipeline)")
    if name is None:
        if len(found) > 1:
            raise ScriptError(f"{script} defines {len(found)} pipelines: {', '.join(found)}",
                              fix="choose one with --pipeline NAME")
        return next(iter(found.values()))
    by_function = {value.__name__: value for value in found.values()}
    if name in found or name in by_function:
        return found.get(name) or by_function[name]
    raise ScriptError(f"{script} has no pipeline named {name!r}",
                      fix=f"its pipelines are: {', '.join(found)}")


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
