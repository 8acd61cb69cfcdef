"""Renderings of a graph: text, Mermaid, DOT and JSON."""

from __future__ import annotations

import json

import pytest

from kale.graph.render import render_dot, render_json, render_mermaid, render_text

DIAMOND = '''
    @pipeline(name="Diamond Demo", experiment="exp", timeout="2h", description="A diamond.",
              steps_defaults={"retry_count": 2, "retry_interval": "30s", "retry_factor": 2})
    def diamond(source="db", iters=5):
        data = load(source)
        a = train(data, iters)
        b = clean(data, 0.25)
        report(a, b)
'''


@pytest.fixture
def graph(project):
    return project.graph(DIAMOND)


def test_text_shows_options_parameters_and_levels(graph):
    text = render_text(graph)
    lines = text.splitlines()
    assert lines[0] == "pipeline diamond-demo ('Diamond Demo')"
    assert "experiment: exp   timeout: 2h" in lines[1]
    assert "  source  str    default 'db'" in lines
    assert "  iters   int    default 5" in lines
    assert "steps (4, in 3 levels; steps of one level run in parallel)" in lines
    assert "   2  train   train(data=load.data, iterations=iters) -> a" in lines
    assert "   2  clean   clean(data=load.data, threshold=0.25) -> b" in lines
    assert "   3  report  report(model=train.a, other=clean.b)" in lines
    assert text.count("retries 2 every 30s x2") == 4


def test_mermaid(graph):
    text = render_mermaid(graph)
    assert text.splitlines()[0] == "flowchart TD"
    assert '    p0[/"source = #quot;db#quot;"/]'.replace("#quot;", "'") in text
    assert '    s0["load"]' in text
    assert "    p0 -.-> s0" in text
    assert '    s0 -- "data → data" --> s1' in text
    assert '    s2 -- "b → other" --> s3' in text


def test_dot(graph):
    text = render_dot(graph)
    assert text.startswith('digraph "diamond-demo" {')
    assert '"param:source" -> "load" [style=dashed];' in text
    assert '"train" -> "report" [label="a → model"];' in text
    assert text.rstrip().endswith("}")


def test_json_round_trips(graph):
    data = json.loads(render_json(graph))
    assert data["name"] == "diamond-demo"
    assert [p["name"] for p in data["parameters"]] == ["source", "iters"]
    report = data["steps"][3]
    assert report["inputs"] == {"model": {"step": "train", "output": "a", "index": None},
                                "other": {"step": "clean", "output": "b", "index": None}}
    assert report["upstream"] == ["clean", "train"]
    assert report["options"]["retry_count"] == 2
    assert {"from": "load", "to": "clean", "output": "data", "input": "data"} in data["edges"]


def test_quotes_in_names_and_values_are_escaped(project):
    graph = project.graph('''
        @pipeline
        def p(source='say "hi"'):
            load(source)
    ''')
    assert "#quot;hi#quot;" in render_mermaid(graph)
    assert '\\"hi\\"' in render_dot(graph)


# -- control flow: conditions, loops, collected and one-of inputs (issue 11) --------------------

FLOW = '''
    @pipeline(name="flow", loop_parallelism=4)
    def flow(threshold=0.5, rates=[0.1, 0.2], flag=True):
        res = load()
        if res > threshold:
            m = train(res)
        elif threshold == 3 and flag:
            m = train(res, 3)
        else:
            m = train(res, 1)
        report(m)
        for x in res:
            y = clean(x, threshold)
            if y:
                report(y, x)
            for r in rates:
                report(r, y)
        models = [train(res, rate=r) for r in rates]
        report(models)
        if not flag:
            for i in range(3):
                report(i)
        else:
            pass
'''


@pytest.fixture
def flow(project):
    return project.graph(FLOW)


def steps_section(text):
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("steps (")):]


def test_text_shows_the_body_under_its_loops_and_branches(flow):
    text = render_text(flow)
    assert "loop parallelism: 4" in text.splitlines()[1]
    assert steps_section(text) == [
        "steps (11 steps, 3 conditions, 4 loops, in 4 levels; steps of one level run in "
        "parallel, a loop's iterations too)",
        "   1  load                 load() -> res",
        "   2  if res > threshold:  condition-1(res=load.res, threshold=threshold, flag=flag)",
        "   3    train              train(data=load.res) -> m",
        "      elif threshold == 3 and flag:",
        "   3    train-2            train(data=load.res, iterations=3) -> m",
        "      else:",
        "   3    train-3            train(data=load.res, iterations=1) -> m",
        "   4  report               report(model=one of train.m | train-2.m | train-3.m)",
        "      for x in res (loop-1, over load.res):",
        "   2    clean              clean(data=x, threshold=threshold) -> y",
        "   3    if y:              condition-2(y=clean.y)",
        "   4      report-2         report(model=clean.y, other=x)",
        "        for r in rates (loop-2, over parameter rates):",
        "   3      report-3         report(model=r, other=clean.y)",
        "      models = [train(...) for r in rates] (loop-3, over parameter rates, collected):",
        "   2    train-4            train(data=load.res, rate=r) -> models",
        "   3  report-4             report(model=[train-4.models for r in loop-3])",
        "   1  if not flag:         condition-3(flag=flag)",
        "        for i in [0, 1, 2] (loop-4, 3 items):",
        "   2      report-5         report(model=i)",
        "      else:",
        "        (no steps)",
    ]


def test_text_of_a_comprehension_over_a_step_result_and_an_empty_if_branch(project):
    graph = project.graph('''
        @pipeline
        def p(flag=True):
            res = load()
            if flag:
                pass
            else:
                report(res)
            cleaned = [clean(x) for x in res]
            report(cleaned)
    ''')
    assert steps_section(render_text(graph))[1:] == [
        "   1  load      load() -> res",
        "   1  if flag:  condition-1(flag=flag)",
        "        (no steps)",
        "      else:",
        "   2    report  report(model=load.res)",
        "      cleaned = [clean(...) for x in res] (loop-1, over load.res, collected):",
        "   2    clean   clean(data=x) -> cleaned",
        "   3  report-2  report(model=[clean.cleaned for x in loop-1])",
    ]


def test_mermaid_draws_conditions_as_diamonds_and_blocks_as_subgraphs(flow):
    text = render_mermaid(flow)
    lines = text.splitlines()
    ids = {step.name: f"s{index}" for index, step in enumerate(flow.steps)}
    assert f'    {ids["condition-1"]}{{"condition-1"}}' in lines
    assert f'    {ids["load"]}["load"]' in lines
    # branches: a subgraph each, entered from the diamond
    assert f'    subgraph {ids["condition-1"]}b0 ["if res > threshold"]' in lines
    assert f'    subgraph {ids["condition-1"]}b1 ["elif threshold == 3 and flag"]' in lines
    assert f'    subgraph {ids["condition-1"]}b2 ["else"]' in lines
    assert f'    {ids["condition-1"]} --> {ids["condition-1"]}b2' in lines
    # loops nest, with what they iterate on a dashed, labelled edge
    assert '    subgraph l0 ["for x in res (loop-1, over load.res)"]' in lines
    assert '        subgraph l1 ["for r in rates (loop-2, over parameter rates)"]' in lines
    assert f'            {ids["report-3"]}["report-3"]' in lines
    assert f'    {ids["load"]} -.->|"each x"| l0' in lines
    assert '    p1 -.->|"each r"| l1' in lines
    # a condition inside a loop, and a loop inside a branch
    assert f'        {ids["condition-2"]}{{"condition-2"}}' in lines
    assert f'    subgraph {ids["condition-3"]}b0 ["if not flag"]' in lines
    assert '        subgraph l3 ["for i in [0, 1, 2] (loop-4, 3 items)"]' in lines
    # an empty branch is not drawn
    assert f'{ids["condition-3"]}b1' not in text
    # collected and one-of inputs
    assert f'    {ids["train-4"]} -.->|"all models → model"| {ids["report-4"]}' in lines
    for option in ("train", "train-2", "train-3"):
        assert f'    {ids[option]} -.->|"m (one of) → model"| {ids["report"]}' in lines
    assert text.count("subgraph") == text.count("\n    end") + text.count("\n        end") \
        + text.count("\n            end")


def test_dot_draws_blocks_as_clusters(flow):
    text = render_dot(flow)
    lines = text.splitlines()
    assert "    compound=true;" in lines
    assert '    "condition-1" [label="condition-1", shape=diamond, style=""];' in lines
    assert '    subgraph "cluster_condition-1_0" {' in lines
    assert '        label="if res > threshold"; style="dotted";' in lines
    assert '    subgraph "cluster_loop-1" {' in lines
    assert '        subgraph "cluster_loop-2" {' in lines
    assert '    "condition-1" -> "train-3" [lhead="cluster_condition-1_2", style=dotted];' in lines
    assert '    "load" -> "clean" [lhead="cluster_loop-1", style=bold, label="each x"];' in lines
    assert '    "param:rates" -> "report-3" [lhead="cluster_loop-2", style=bold, ' \
        'label="each r"];' in lines
    assert '    "train-4" -> "report-4" [style=dashed, label="all models → model", ' \
        'ltail="cluster_loop-3"];' in lines
    assert '    "train-2" -> "report" [style=dashed, label="m (one of) → model"];' in lines
    assert "cluster_condition-3_1" not in text  # an empty branch
    assert text.count("{") == text.count("}")


def test_json_describes_conditions_loops_and_items(flow):
    data = json.loads(render_json(flow))
    assert data["loop_parallelism"] == 4
    steps = {step["name"]: step for step in data["steps"]}
    condition = steps["condition-1"]["condition"]
    assert condition["tests"] == ["res > threshold", "threshold == 3 and flag"]
    assert condition["else"] is True
    assert condition["branches"] == ["if res > threshold", "elif threshold == 3 and flag",
                                     "else"]
    assert condition["source"].startswith("def condition_1(res, threshold, flag):")
    assert steps["load"]["item_outputs"] == ["res"]
    assert steps["clean"]["inputs"]["data"] == {"item_of": "loop-1", "variable": "x"}
    assert steps["report-3"]["scopes"] == [{"loop": "loop-1"}, {"loop": "loop-2"}]
    assert steps["report-5"]["scopes"] == [{"condition": "condition-3", "branch": 0},
                                           {"loop": "loop-4"}]
    assert steps["report-4"]["inputs"]["model"] == {
        "collected": {"step": "train-4", "output": "models", "loop": "loop-3"}}
    assert steps["report"]["inputs"]["model"]["condition"] == "condition-1"
    loops = {loop["name"]: loop for loop in data["loops"]}
    assert loops["loop-4"] == {"name": "loop-4", "variable": "i",
                               "items": {"constant": [0, 1, 2]},
                               "line": loops["loop-4"]["line"],
                               "scopes": [{"condition": "condition-3", "branch": 0}],
                               "collects": False}
    assert loops["loop-3"]["collects"] is True
    kinds = {(edge["from"], edge["to"], edge.get("kind", "output")) for edge in data["edges"]}
    assert ("load", "clean", "items") in kinds
    assert ("train-4", "report-4", "collected") in kinds
    assert ("train-2", "report", "one-of") in kinds
    # every name a step's scopes or inputs mention exists
    names = set(steps)
    for step in data["steps"]:
        for scope in step["scopes"]:
            assert scope.get("condition", next(iter(names))) in names
            assert scope.get("loop", "loop-1") in loops
        assert set(step["upstream"]) <= names


def test_every_renderer_handles_every_control_flow_shape(project):
    graph = project.graph('''
        @pipeline
        def p(rates=[1], flag=False):
            for r in rates:
                for s in [1, 2]:
                    if r > s:
                        a = load(r)
                    else:
                        a = load(s)
                    report(a)
                ms = [train(r, rate=s) for s in rates]
                report(ms)
    ''')
    for render in (render_text, render_mermaid, render_dot, render_json):
        assert render(graph)
    text = render_text(graph)
    assert "   3      report     report(model=one of load.a | load-2.a)" in text.splitlines()
    assert "          else:" in text.splitlines()  # in the if, in two loops
