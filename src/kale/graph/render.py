"""Ways to show a Graph: readable text, Mermaid and Graphviz DOT (``kale graph``)."""

from __future__ import annotations

import json

from kale.errors import SourceLocation
from kale.graph.model import Graph, OutputRef, ParameterRef, Step, ValueSource
from kale.options import format_duration


def _value(source: ValueSource) -> str:
    if isinstance(source, ParameterRef):
        return source.name
    if isinstance(source, OutputRef):
        return f"{source.step}.{source.variable}"
    return repr(source.value)


def _call(step: Step) -> str:
    arguments = ", ".join(f"{arg.name}={_value(arg.source)}" for arg in step.arguments)
    text = f"{step.function.function_name}({arguments})"
    if step.outputs:
        text += " -> " + ", ".join(step.outputs)
    return text


def render_text(graph: Graph) -> str:
    """A readable summary: options, parameters, and steps by level (a level's steps can run in
    parallel)."""
    options = graph.options
    title = f"pipeline {options.name}"
    if options.display_name != options.name:
        title += f" ({options.display_name!r})"
    lines = [title]
    details = []
    if options.experiment:
        details.append(f"experiment: {options.experiment}")
    if options.timeout is not None:
        details.append(f"timeout: {format_duration(options.timeout)}")
    if details:
        lines.append("  " + "   ".join(details))
    if options.description:
        lines.append(f"  {options.description}")
    lines.append(f"  defined at {SourceLocation(graph.filename, graph.line).display_line}")
    lines.append("")
    if graph.parameters:
        lines.append("parameters")
        width = max(len(p.name) for p in graph.parameters)
        for parameter in graph.parameters:
            lines.append(f"  {parameter.name:<{width}}  {parameter.type:<5}  "
                         f"default {parameter.default!r}")
        lines.append("")
    count = len(graph.steps)
    lines.append(f"steps ({count}, in {len(graph.levels)} level"
                 f"{'s' if len(graph.levels) != 1 else ''}; steps of one level run in parallel)")
    width = max(len(step.name) for step in graph.steps)
    for number, level in enumerate(graph.levels, start=1):
        for name in level:
            step = graph.step(name)
            lines.append(f"  {number:>2}  {name:<{width}}  {_call(step)}")
            described = step.options.describe()
            if described:
                lines.append(f"      {'':<{width}}  " + " · ".join(described))
    return "\n".join(lines)


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def render_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart: parameters as slanted boxes, steps as boxes, outputs on the edges."""
    ids = {step.name: f"s{index}" for index, step in enumerate(graph.steps)}
    params = {p.name: f"p{index}" for index, p in enumerate(graph.parameters)}
    lines = ["flowchart TD"]
    for parameter in graph.parameters:
        label = _mermaid_label(f"{parameter.name} = {parameter.default!r}")
        lines.append(f"    {params[parameter.name]}[/{label}/]")
    for step in graph.steps:
        lines.append(f"    {ids[step.name]}[{_mermaid_label(step.name)}]")
    for step in graph.steps:
        for arg in step.arguments:
            source = arg.source
            if isinstance(source, ParameterRef):
                lines.append(f"    {params[source.name]} -.-> {ids[step.name]}")
            elif isinstance(source, OutputRef):
                label = _mermaid_label(f"{source.variable} → {arg.name}")
                lines.append(f"    {ids[source.step]} -- {label} --> {ids[step.name]}")
    return "\n".join(lines)


def _dot(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid DOT quoted string


def render_dot(graph: Graph) -> str:
    """A Graphviz digraph: ``kale graph script.py --format dot | dot -Tpng > dag.png``."""
    lines = [f"digraph {_dot(graph.name)} {{", "    rankdir=TB;",
             '    node [shape=box, style="rounded"];']
    for parameter in graph.parameters:
        label = f"{parameter.name} = {parameter.default!r}"
        lines.append(f"    {_dot('param:' + parameter.name)} [shape=parallelogram, "
                     f"label={_dot(label)}];")
    for step in graph.steps:
        lines.append(f"    {_dot(step.name)} [label={_dot(step.name)}];")
    for step in graph.steps:
        for arg in step.arguments:
            source = arg.source
            if isinstance(source, ParameterRef):
                lines.append(f"    {_dot('param:' + source.name)} -> {_dot(step.name)} "
                             "[style=dashed];")
            elif isinstance(source, OutputRef):
                label = f"{source.variable} → {arg.name}"
                lines.append(f"    {_dot(source.step)} -> {_dot(step.name)} "
                             f"[label={_dot(label)}];")
    lines.append("}")
    return "\n".join(lines)


def render_json(graph: Graph) -> str:
    return json.dumps(graph.to_dict(), indent=2)


RENDERERS = {
    "text": render_text,
    "mermaid": render_mermaid,
    "dot": render_dot,
    "json": render_json,
}

__all__ = ["RENDERERS", "render_dot", "render_json", "render_mermaid", "render_text"]
