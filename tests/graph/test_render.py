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
