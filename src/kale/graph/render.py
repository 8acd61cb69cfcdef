"""Ways to show a Graph: readable text, Mermaid and Graphviz DOT (``kale graph``).

A pipeline with control flow is shown as its body is written: the steps of a loop under its
``for``, those of a branch under its ``if``/``elif``/``else``, a condition as the test it
evaluates. A pipeline without is shown as before: its steps by level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kale.errors import SourceLocation
from kale.graph.model import (
    Branch,
    CollectedRef,
    Constant,
    Graph,
    ItemRef,
    Loop,
    OneOfRef,
    OutputRef,
    ParameterRef,
    Scope,
    Step,
    ValueSource,
    short_repr,
)
from kale.options import format_duration


def _value(source: ValueSource, graph: Graph | None = None) -> str:
    if isinstance(source, ParameterRef):
        return source.name
    if isinstance(source, OutputRef):
        return f"{source.step}.{source.variable}"
    if isinstance(source, ItemRef):
        return source.variable
    if isinstance(source, CollectedRef):
        variable = graph.loop(source.loop).variable if graph is not None else "_"
        return f"[{source.step}.{source.variable} for {variable} in {source.loop}]"
    if isinstance(source, OneOfRef):
        return "one of " + " | ".join(_value(option) for option in source.options)
    return repr(source.value)


def _call(step: Step, graph: Graph | None = None) -> str:
    arguments = ", ".join(f"{arg.name}={_value(arg.source, graph)}" for arg in step.arguments)
    text = f"{step.function.function_name}({arguments})"
    if step.outputs:
        text += " -> " + ", ".join(step.outputs)
    return text


def _details(step: Step) -> list[str]:
    """What the line under a step says: a container step's image, then its options."""
    image = [f"container {step.container.image}"] if step.container is not None else []
    return image + step.options.describe()


# -- the body as a tree of blocks ----------------------------------------------------------------


@dataclass
class _Block:
    """A loop or a branch of the body, with what it holds in body order: steps and blocks."""

    scope: Scope | None  # None for the body itself
    children: list[Step | _Block] = field(default_factory=list)

    def steps(self) -> list[Step]:
        found: list[Step] = []
        for child in self.children:
            found.extend(child.steps() if isinstance(child, _Block) else [child])
        return found


def _key(scope: Scope) -> tuple[str, ...]:
    if isinstance(scope, Loop):
        return ("loop", scope.name)
    return ("branch", scope.condition, str(scope.index))


def _tree(graph: Graph) -> _Block:
    """The body as written: every step under the blocks that enclose it. A condition is
    followed by a block for each of its branches, empty ones too."""
    root = _Block(None)
    for step in graph.steps:
        block = root
        for scope in step.scopes:
            found = next((child for child in reversed(block.children)
                          if isinstance(child, _Block) and child.scope is not None
                          and _key(child.scope) == _key(scope)), None)
            if found is None:
                found = _Block(scope)
                block.children.append(found)
            block = found
        block.children.append(step)
        if step.condition is not None:
            block.children.extend(_Block(Branch(step.name, index))
                                  for index in range(step.condition.branches))
    return root


def _has_control_flow(graph: Graph) -> bool:
    return bool(graph.loops) or any(step.condition is not None for step in graph.steps)


def _items(loop: Loop) -> tuple[str, str]:
    """What a loop's header shows it iterates, and the details: its name and what that is."""
    items = loop.items
    if isinstance(items, OutputRef):
        return items.variable, f"{loop.name}, over {items.step}.{items.variable}"
    if isinstance(items, ParameterRef):
        return items.name, f"{loop.name}, over parameter {items.name}"
    assert isinstance(items, Constant)
    count = len(items.value)
    return short_repr(items.value), f"{loop.name}, {count} item{'s' * (count != 1)}"


def _loop_header(loop: Loop, block: _Block) -> str:
    """``for x in res (loop-1, over load.res):``; a comprehension shows what it binds."""
    shown, details = _items(loop)
    if loop.collects:
        steps = block.steps()
        call = steps[0].function.function_name if steps else "..."
        target = steps[0].outputs[0] if steps and steps[0].outputs else "_"
        return f"{target} = [{call}(...) for {loop.variable} in {shown}] ({details}, collected):"
    return f"for {loop.variable} in {shown} ({details}):"


def _branch_header(graph: Graph, branch: Branch) -> str:
    return graph.step(branch.condition).condition.describe(branch.index) + ":"


# -- text ----------------------------------------------------------------------------------------


def render_text(graph: Graph) -> str:
    """A readable summary: options, parameters, and steps by level (a level's steps can run in
    parallel); with control flow, the steps in body order under their loops and branches."""
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
    if options.loop_parallelism is not None:
        details.append(f"loop parallelism: {options.loop_parallelism}")
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
    if _has_control_flow(graph):
        lines.extend(_text_body(graph))
        return "\n".join(lines)
    count = len(graph.steps)
    lines.append(f"steps ({count}, in {len(graph.levels)} level"
                 f"{'s' if len(graph.levels) != 1 else ''}; steps of one level run in parallel)")
    width = max(len(step.name) for step in graph.steps)
    for number, level in enumerate(graph.levels, start=1):
        for name in level:
            step = graph.step(name)
            lines.append(f"  {number:>2}  {name:<{width}}  {_call(step)}")
            described = _details(step)
            if described:
                lines.append(f"      {'':<{width}}  " + " · ".join(described))
    return "\n".join(lines)


def _text_body(graph: Graph) -> list[str]:
    level = {name: number for number, names in enumerate(graph.levels, start=1)
             for name in names}
    steps = len(graph.user_steps)
    conditions = len(graph.steps) - steps
    parts = [f"{steps} step{'s' * (steps != 1)}"]
    if conditions:
        parts.append(f"{conditions} condition{'s' * (conditions != 1)}")
    if graph.loops:
        parts.append(f"{len(graph.loops)} loop{'s' * (len(graph.loops) != 1)}")
    levels = len(graph.levels)
    lines = [f"steps ({', '.join(parts)}, in {levels} level{'s' * (levels != 1)}; steps of "
             "one level run in parallel, a loop's iterations too)"]
    tree = _tree(graph)

    def width_of(block: _Block, depth: int) -> int:
        widest = 0
        for child in block.children:
            if isinstance(child, _Block):
                widest = max(widest, width_of(child, depth + 1))
            else:
                shown = child.name if child.condition is None else \
                    child.condition.describe(0) + ":"
                widest = max(widest, 2 * depth + len(shown))
        return widest

    width = max(width_of(tree, 0), 1)

    def show(block: _Block, depth: int) -> None:
        indent = "  " * depth
        for child in block.children:
            if isinstance(child, _Block):
                scope = child.scope
                if isinstance(scope, Loop):
                    lines.append(f"      {indent}{_loop_header(scope, child)}")
                    show(child, depth + 1)
                    continue
                assert isinstance(scope, Branch)
                if scope.index > 0:  # the `if` itself is its condition's line
                    lines.append(f"      {indent}{_branch_header(graph, scope)}")
                if not child.children:
                    lines.append(f"      {indent}  (no steps)")
                show(child, depth + 1)
                continue
            step = child
            number = f"{level[step.name]:>2}"
            if step.condition is not None:
                header = f"{indent}{step.condition.describe(0)}:"
                lines.append(f"  {number}  {header:<{width}}  {_condition_call(step, graph)}")
                continue
            name = f"{indent}{step.name}"
            lines.append(f"  {number}  {name:<{width}}  {_call(step, graph)}")
            described = _details(step)
            if described:
                lines.append(f"      {'':<{width}}  " + " · ".join(described))

    show(tree, 0)
    return lines


def _condition_call(step: Step, graph: Graph) -> str:
    """What a condition step reads: ``condition-1(res=load.res, threshold=threshold)``."""
    arguments = ", ".join(f"{arg.name}={_value(arg.source, graph)}" for arg in step.arguments)
    return f"{step.name}({arguments})"


# -- mermaid -------------------------------------------------------------------------------------


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def render_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart: parameters as slanted boxes, steps as boxes, outputs on the edges;
    conditions as diamonds, loops and branches as subgraphs, and dashed, labelled edges for
    what a loop iterates, results collected from a loop and the output of one branch."""
    ids = {step.name: f"s{index}" for index, step in enumerate(graph.steps)}
    params = {p.name: f"p{index}" for index, p in enumerate(graph.parameters)}
    lines = ["flowchart TD"]
    for parameter in graph.parameters:
        label = _mermaid_label(f"{parameter.name} = {parameter.default!r}")
        lines.append(f"    {params[parameter.name]}[/{label}/]")
    if not _has_control_flow(graph):
        for step in graph.steps:
            lines.append(f"    {ids[step.name]}[{_mermaid_label(step.name)}]")
    else:
        block_ids: dict[tuple[str, ...], str] = {}
        for index, loop in enumerate(graph.loops):
            block_ids[_key(loop)] = f"l{index}"

        def block_id(scope: Scope) -> str:
            if isinstance(scope, Branch):
                return f"{ids[scope.condition]}b{scope.index}"
            return block_ids[_key(scope)]

        def show(block: _Block, depth: int) -> None:
            indent = "    " * depth
            for child in block.children:
                if isinstance(child, _Block):
                    if not child.children:
                        continue  # an empty branch: nothing runs
                    scope = child.scope
                    assert scope is not None
                    title = (_loop_header(scope, child) if isinstance(scope, Loop) else
                             _branch_header(graph, scope)).rstrip(":")
                    lines.append(f"{indent}subgraph {block_id(scope)} "
                                 f"[{_mermaid_label(title)}]")
                    show(child, depth + 1)
                    lines.append(f"{indent}end")
                elif child.condition is not None:
                    lines.append(f"{indent}{ids[child.name]}{{{_mermaid_label(child.name)}}}")
                else:
                    lines.append(f"{indent}{ids[child.name]}[{_mermaid_label(child.name)}]")

        show(_tree(graph), 1)
        for step in graph.steps:
            if step.condition is None:
                continue
            for index in range(step.condition.branches):
                if any(Branch(step.name, index) in other.scopes for other in graph.steps):
                    lines.append(f"    {ids[step.name]} --> {ids[step.name]}b{index}")
        for loop in graph.loops:
            items = loop.items
            label = _mermaid_label(f"each {loop.variable}")
            if isinstance(items, OutputRef):
                lines.append(f"    {ids[items.step]} -.->|{label}| {block_id(loop)}")
            elif isinstance(items, ParameterRef):
                lines.append(f"    {params[items.name]} -.->|{label}| {block_id(loop)}")
    for step in graph.steps:
        for arg in step.arguments:
            source = arg.source
            target = ids[step.name]
            if isinstance(source, ParameterRef):
                lines.append(f"    {params[source.name]} -.-> {target}")
            elif isinstance(source, OutputRef):
                label = _mermaid_label(f"{source.variable} → {arg.name}")
                lines.append(f"    {ids[source.step]} -- {label} --> {target}")
            elif isinstance(source, CollectedRef):
                label = _mermaid_label(f"all {source.variable} → {arg.name}")
                lines.append(f"    {ids[source.step]} -.->|{label}| {target}")
            elif isinstance(source, OneOfRef):
                for option in source.options:
                    label = _mermaid_label(f"{option.variable} (one of) → {arg.name}")
                    lines.append(f"    {ids[option.step]} -.->|{label}| {target}")
    return "\n".join(lines)


# -- dot -----------------------------------------------------------------------------------------


def _dot(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid DOT quoted string


def render_dot(graph: Graph) -> str:
    """A Graphviz digraph: ``kale graph script.py --format dot | dot -Tpng > dag.png``.
    Loops and branches are clusters, conditions diamonds."""
    lines = [f"digraph {_dot(graph.name)} {{", "    rankdir=TB;",
             '    node [shape=box, style="rounded"];']
    flow = _has_control_flow(graph)
    if flow:
        lines.append("    compound=true;")  # edges may end at a cluster's border
    for parameter in graph.parameters:
        label = f"{parameter.name} = {parameter.default!r}"
        lines.append(f"    {_dot('param:' + parameter.name)} [shape=parallelogram, "
                     f"label={_dot(label)}];")
    clusters: dict[tuple[str, ...], tuple[str, str]] = {}  # scope -> (cluster, a step in it)
    if not flow:
        for step in graph.steps:
            lines.append(f"    {_dot(step.name)} [label={_dot(step.name)}];")
    else:
        def show(block: _Block, depth: int) -> None:
            indent = "    " * depth
            for child in block.children:
                if isinstance(child, _Block):
                    inside = child.steps()
                    if not inside:
                        continue
                    scope = child.scope
                    assert scope is not None
                    if isinstance(scope, Loop):
                        name, title = f"cluster_{scope.name}", _loop_header(scope, child)
                        style = "dashed"
                    else:
                        name = f"cluster_{scope.condition}_{scope.index}"
                        title, style = _branch_header(graph, scope), "dotted"
                    clusters[_key(scope)] = (name, inside[0].name)
                    lines.append(f"{indent}subgraph {_dot(name)} {{")
                    lines.append(f"{indent}    label={_dot(title.rstrip(':'))}; "
                                 f"style={_dot(style)};")
                    show(child, depth + 1)
                    lines.append(f"{indent}}}")
                elif child.condition is not None:
                    lines.append(f"{indent}{_dot(child.name)} [label={_dot(child.name)}, "
                                 "shape=diamond, style=\"\"];")
                else:
                    lines.append(f"{indent}{_dot(child.name)} [label={_dot(child.name)}];")

        show(_tree(graph), 1)
        for step in graph.steps:
            if step.condition is None:
                continue
            for index in range(step.condition.branches):
                found = clusters.get(_key(Branch(step.name, index)))
                if found is not None:
                    lines.append(f"    {_dot(step.name)} -> {_dot(found[1])} "
                                 f"[lhead={_dot(found[0])}, style=dotted];")
        for loop in graph.loops:
            found = clusters.get(_key(loop))
            items = loop.items
            if found is None or isinstance(items, Constant):
                continue
            source = items.step if isinstance(items, OutputRef) else "param:" + items.name
            lines.append(f"    {_dot(source)} -> {_dot(found[1])} [lhead={_dot(found[0])}, "
                         f"style=bold, label={_dot('each ' + loop.variable)}];")
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
            elif isinstance(source, CollectedRef):
                label = f"all {source.variable} → {arg.name}"
                tail = clusters.get(("loop", source.loop))
                ltail = f", ltail={_dot(tail[0])}" if tail else ""
                lines.append(f"    {_dot(source.step)} -> {_dot(step.name)} "
                             f"[style=dashed, label={_dot(label)}{ltail}];")
            elif isinstance(source, OneOfRef):
                for option in source.options:
                    label = f"{option.variable} (one of) → {arg.name}"
                    lines.append(f"    {_dot(option.step)} -> {_dot(step.name)} "
                                 f"[style=dashed, label={_dot(label)}];")
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
