"""``kale ui``: a local, read-only web UI over the run store.

The standard library's threaded HTTP server is enough for one user on 127.0.0.1: every page is
HTML rendered here from the run records (``kale.local.record``), with one stylesheet and one
small script shipped in the package (``static/``); nothing is fetched from the internet, and
nothing is written. Pages:

- ``/``: the runs (parameters, metrics, status, durations), sortable, with a pipeline filter;
  the runs ticked are compared (``/compare?run=ID&run=ID``);
- ``/run/<id>``: a run: its DAG drawn (SVG), each step's status, attempts, durations, logs,
  outputs, metrics and artifacts (HTML in a sandboxed frame, served with a ``sandbox``
  Content-Security-Policy; figures inline);
- ``/charts?pipeline=NAME``: each metric across the runs of a pipeline;
- ``/study/<id>``: a study (``kale.tuning``): its trials (sortable), the objective trial by
  trial with the best so far, and each parameter against the objective;
- ``/artifact/<id>/<task>/<attempt>/<name>``: an artifact's file, only from the run's folder.
"""

from __future__ import annotations

import html
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

from kale.local.progress import local_time, task_rows, took
from kale.local.record import EVENTS_FILE, RUN_FILE, read_record, run_metrics, task_metrics
from kale.logs import metric_text

STATIC = Path(__file__).parent / "static"
#: The end of a log shown on a run's page (the whole log is in the record).
LOG_TAIL = 64 * 1024
_TYPES = {"html": "text/html; charset=utf-8", "file": "text/html; charset=utf-8",
          "markdown": "text/plain; charset=utf-8", "figure": "image/png",
          "classification": "application/json"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return metric_text(value)
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)} · "
            "Kale</title><link rel=stylesheet href=/static/kale.css>"
            "<script src=/static/kale.js defer></script></head><body>"
            "<header><a class=brand href='/'>Kale runs</a></header>"
            f"<main>{body}</main></body></html>").encode()


def _sort_key(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value!r}"
    return str(value)


class Store:
    """The run records under ``home``, as each page finds them (runs finish while the UI is
    open): a record is read again only when its ``run.json`` changed (size or time), so a page
    over a thousand finished runs costs a thousand ``stat`` calls, not a thousand parses."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[dict[str, Any]]:
        from kale.local.record import settle_gone_run

        found = []
        try:
            entries = list(os.scandir(self.home / "runs"))
        except OSError:
            return []
        with self._lock:
            for entry in entries:
                path = os.path.join(entry.path, RUN_FILE)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                try:  # a run in flight: its changes since the snapshot
                    events = os.stat(os.path.join(entry.path, EVENTS_FILE))
                    since = (events.st_mtime_ns, events.st_size)
                except OSError:
                    since = None
                key = (stat.st_mtime_ns, stat.st_size, since)
                held = self._cache.get(path)
                if held is None or held[0] != key:
                    data = read_record(entry.path)
                    if data is None or not isinstance(data.get("id"), str):
                        continue
                    data["_metrics"] = run_metrics(data)
                    held = self._cache[path] = (key, data)
                data = held[1]
                if data.get("status") == "running":  # its runner may be gone since
                    data = json.loads(json.dumps(data))
                    settle_gone_run(data)
                found.append(data)
        return sorted(found, key=lambda run: run.get("started") or "", reverse=True)

    def studies(self) -> list[dict[str, Any]]:
        """The study records (``kale.tuning.study``), newest first; a few, read each time."""
        from kale.tuning.study import list_studies

        return list_studies(self.home)

    def study(self, study_id: str) -> dict[str, Any] | None:
        path = self.home / "studies" / study_id / "study.json"
        if "/" in study_id or study_id.startswith(".") or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        data["folder"] = str(path.parent)
        return data

    def run(self, run_id: str) -> dict[str, Any] | None:
        path = self.home / "runs" / run_id / RUN_FILE
        if "/" in run_id or run_id.startswith(".") or not path.is_file():
            return None
        from kale.local.record import settle_gone_run

        data = read_record(path.parent)
        if data is None:
            return None
        settle_gone_run(data)
        return data


# -- pages ----------------------------------------------------------------------------------------


def runs_page(store: Store, pipeline: str | None) -> bytes:
    found = store.runs()
    pipelines = sorted({run.get("pipeline", "?") for run in found})
    if pipeline:
        found = [run for run in found if run.get("pipeline") == pipeline]
    metrics = [run.get("_metrics") or {} for run in found]
    parameters: dict[str, None] = {}
    names: dict[str, None] = {}
    for run, logged in zip(found, metrics, strict=True):
        parameters.update(dict.fromkeys(run.get("parameters") or {}))
        names.update(dict.fromkeys(logged))
    head = "".join(f"<th data-type={kind}>{_e(label)}</th>" for label, kind in (
        ("", "none"), ("run", "text"), ("pipeline", "text"), ("status", "text"),
        ("started", "text"), ("duration", "number"))) + \
        "".join(f"<th data-type=mixed class=param>{_e(name)}</th>" for name in parameters) + \
        "".join(f"<th data-type=mixed class=metric>{_e(name)}</th>" for name in names)
    rows = []
    for run, logged in zip(found, metrics, strict=True):
        given = run.get("parameters") or {}
        cells = [
            f"<td><input type=checkbox name=run value={_e(run['id'])} "
            f"aria-label='compare {_e(run['id'][:8])}'></td>",
            f"<td data-sort={_e(run['id'])}><a href=/run/{quote(run['id'])}>"
            f"{_e(run['id'][:8])}</a></td>",
            f"<td>{_e(run.get('pipeline'))}</td>",
            f"<td class='status {_e(run.get('status'))}'>{_e(run.get('status'))}</td>",
            f"<td data-sort={_e(run.get('started') or '')}>"
            f"{_e(local_time(run.get('started')))}</td>",
            f"<td data-sort={_e(run.get('duration') or 0)}>{_e(took(run.get('duration')))}</td>",
        ]
        cells += [f"<td data-sort={_e(_sort_key(given[name]))}>{_e(_cell(given[name]))}</td>"
                  if name in given else "<td data-sort=''>-</td>" for name in parameters]
        cells += [f"<td data-sort={_e(_sort_key(logged[name]))} class=metric>"
                  f"{_e(_cell(logged[name]))}</td>" if name in logged else
                  "<td data-sort=''>-</td>" for name in names]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    options = "".join(f"<option value='{_e(name)}'{' selected' if name == pipeline else ''}>"
                      f"{_e(name)}</option>" for name in pipelines)
    charts = f" · <a href='/charts?pipeline={quote(pipeline)}'>metric charts</a>" \
        if pipeline else ""
    studies = store.studies()
    if pipeline:
        studies = [study for study in studies if study.get("pipeline") == pipeline]
    listed = "".join(
        f"<li><a href='/study/{quote(study['id'])}'>study {_e(study['id'][:8])}</a> "
        f"<span class='status {_e(study.get('status'))}'>{_e(study.get('status'))}</span> "
        f"{_e(study.get('pipeline'))}: {_e(study.get('goal'))} {_e(study.get('objective'))}, "
        f"{len(study.get('trials') or [])} trials"
        + (f", best {_e(_cell((study.get('best') or {}).get('value')))}"
           if study.get("best") else "") + "</li>" for study in studies[:20])
    studies_html = f"<h2>Studies</h2><ul class=studies>{listed}</ul>" if listed else ""
    body = (f"<h1>Runs</h1><p class=muted>{len(found)} run{'s' if len(found) != 1 else ''} in "
            f"{_e(store.home)}{charts}</p>"
            "<form class=filter method=get action='/'><label>pipeline <select name=pipeline "
            "onchange='this.form.submit()'><option value=''>all</option>"
            f"{options}</select></label></form>"
            "<form method=get action=/compare id=compare>"
            "<button type=submit id=compare-button disabled>compare selected</button>"
            f"<table class=sortable id=runs><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></form>{studies_html}")
    return _page("Runs", body)


def _layers(steps: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each step's column in the drawing: the longest path to it from a root."""
    upstream: dict[str, list[str]] = {name: [] for name in steps}
    for source, target in edges:
        if source in upstream and target in upstream:
            upstream[target].append(source)
    layer: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in layer:
            layer[name] = 1 + max((depth(up, seen | {name}) for up in upstream[name]
                                   if up not in seen), default=-1)
        return layer[name]

    for name in steps:
        depth(name)
    return layer


def dag_svg(run: dict[str, Any]) -> str:
    """The run's DAG as SVG: a box per step (its tasks' states), columns by depth."""
    order = list(run.get("order") or [])
    states: dict[str, list[str]] = {}
    for task, step in run.get("steps", {}).items():
        name = step.get("step", task)
        states.setdefault(name, []).append(
            "skipped (condition)" if step.get("by_condition") else step.get("status", "?"))
        if name not in order:
            order.append(name)
    edges = [tuple(edge) for edge in run.get("edges") or []]
    layer = _layers(order, edges)
    columns: dict[int, list[str]] = {}
    for name in order:
        columns.setdefault(layer[name], []).append(name)
    width, height, gap_x, gap_y = 170, 46, 60, 22
    place = {}
    for column, names in columns.items():
        for row, name in enumerate(names):
            place[name] = (20 + column * (width + gap_x), 20 + row * (height + gap_y))
    total_w = 40 + (max(columns, default=0) + 1) * (width + gap_x) - gap_x
    total_h = 40 + max((len(names) for names in columns.values()), default=1) * \
        (height + gap_y) - gap_y
    parts = [f"<svg class=dag xmlns='http://www.w3.org/2000/svg' width={total_w} "
             f"height={total_h} viewBox='0 0 {total_w} {total_h}' role=img "
             f"aria-label='DAG of {_e(run.get('pipeline'))}'>"]
    for source, target in edges:
        if source in place and target in place:
            (x1, y1), (x2, y2) = place[source], place[target]
            x1, y1, y2 = x1 + width, y1 + height / 2, y2 + height / 2
            middle = (x1 + x2) / 2
            parts.append(f"<path class=edge d='M{x1},{y1} C{middle},{y1} {middle},{y2} "
                         f"{x2},{y2}'/>")
    for name, (x, y) in place.items():
        tasks = states.get(name, ["waiting"])
        status = tasks[0] if len(set(tasks)) == 1 else "mixed"
        counts = {state: tasks.count(state) for state in dict.fromkeys(tasks)}
        detail = ", ".join(f"{count} {state}" for state, count in counts.items()) \
            if len(tasks) > 1 else status
        shown = name if len(name) <= 22 else name[:21] + "…"
        parts.append(f"<g class='node {_e(status.split()[0])}'><title>{_e(name)}: "
                     f"{_e(detail)}</title><a href='#step-{_e(name)}'>"
                     f"<rect x={x} y={y} width={width} height={height} rx=6 />"
                     f"<text x={x + 10} y={y + 19} class=name>{_e(shown)}</text>"
                     f"<text x={x + 10} y={y + 36} class=state>{_e(detail[:28])}</text>"
                     "</a></g>")
    parts.append("</svg>")
    return "".join(parts)


def _artifact_url(run_id: str, task: str, number: int, name: str) -> str:
    return f"/artifact/{quote(run_id)}/{quote(task, safe='')}/{number}/{quote(name)}"


def _artifact_html(run_id: str, task: str, number: int, name: str,
                   entry: dict[str, Any]) -> str:
    url = _artifact_url(run_id, task, number, name)
    kind = entry.get("kind")
    label = f"<h4>{_e(name)} <span class=muted>({_e(kind)}"
    label += f", from {_e(entry['source'])}" if entry.get("source") else ""
    label += f") <a href='{url}'>open</a></span></h4>"
    if kind in ("html", "file"):
        # No scripts, no same origin: an artifact is the step's HTML, not the UI's.
        return f"{label}<iframe class=artifact sandbox src='{url}' title='{_e(name)}'></iframe>"
    if kind == "figure":
        return f"{label}<img class=figure src='{url}' alt='{_e(name)}'>"
    try:
        if kind == "markdown":
            text = Path(entry["path"]).read_text(errors="replace")[:LOG_TAIL]
            return f"{label}<pre class=markdown>{_e(text)}</pre>"
        if kind == "classification":
            return label + _classification(json.loads(Path(entry["path"]).read_text()))
    except (OSError, ValueError):
        return f"{label}<p class=muted>(its file cannot be read)</p>"
    return label


def _classification(data: dict[str, Any]) -> str:
    parts = []
    matrix = data.get("confusion_matrix")
    if isinstance(matrix, dict):
        categories = [str(c) for c in matrix.get("categories", [])]
        head = "".join(f"<th>{_e(c)}</th>" for c in categories)
        rows = "".join(f"<tr><th>{_e(c)}</th>" + "".join(f"<td>{_e(_cell(v))}</td>"
                                                        for v in row) + "</tr>"
                       for c, row in zip(categories, matrix.get("matrix", []), strict=False))
        parts.append(f"<table class=matrix><caption>confusion matrix (rows: true, columns: "
                     f"predicted)</caption><thead><tr><th></th>{head}</tr></thead>"
                     f"<tbody>{rows}</tbody></table>")
    curve = data.get("roc_curve")
    if isinstance(curve, dict):
        parts.append(_line_chart("ROC curve", [(float(x), float(y)) for x, y in
                                               zip(curve.get("fpr", []), curve.get("tpr", []),
                                                   strict=False)],
                                 "false positive rate", "true positive rate"))
    return "".join(parts)


def _line_chart(title: str, points: list[tuple[float, float]], x_label: str, y_label: str,
                labels: list[str] | None = None) -> str:
    """A small SVG line chart with its points marked (``labels``: a tooltip per point)."""
    width, height, pad = 420, 220, 40
    if not points:
        return ""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    low_x, high_x = min(xs), max(xs)
    low_y, high_y = min(ys), max(ys)
    span_x = (high_x - low_x) or 1.0
    span_y = (high_y - low_y) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (pad + (x - low_x) / span_x * (width - 2 * pad),
                height - pad - (y - low_y) / span_y * (height - 2 * pad))

    placed = [at(x, y) for x, y in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in placed)
    marks = "".join(f"<circle cx={x:.1f} cy={y:.1f} r=3.5><title>"
                    f"{_e(labels[index] if labels else '')} {_e(metric_text(points[index][1]))}"
                    "</title></circle>" for index, (x, y) in enumerate(placed))
    return (f"<figure class=chart><figcaption>{_e(title)}</figcaption>"
            f"<svg xmlns='http://www.w3.org/2000/svg' width={width} height={height} "
            f"viewBox='0 0 {width} {height}' role=img aria-label='{_e(title)}'>"
            f"<line class=axis x1={pad} y1={height - pad} x2={width - pad} y2={height - pad} />"
            f"<line class=axis x1={pad} y1={pad} x2={pad} y2={height - pad} />"
            f"<text x={pad} y={height - 12} class=tick>{_e(metric_text(low_x))}</text>"
            f"<text x={width - pad} y={height - 12} class=tick text-anchor=end>"
            f"{_e(metric_text(high_x))}</text>"
            f"<text x=4 y={height - pad} class=tick>{_e(metric_text(low_y))}</text>"
            f"<text x=4 y={pad} class=tick>{_e(metric_text(high_y))}</text>"
            f"<text x={width / 2} y={height - 2} class=label text-anchor=middle>"
            f"{_e(x_label)}</text>"
            f"<text x=12 y=20 class=label>{_e(y_label)}</text>"
            f"<polyline class=series points='{line}'/>{marks}</svg></figure>")


def run_page(run: dict[str, Any]) -> bytes:
    run_id = run["id"]
    parameters = "".join(f"<tr><th>{_e(name)}</th><td>{_e(_cell(value))}</td></tr>"
                         for name, value in (run.get("parameters") or {}).items())
    metrics = task_metrics(run)
    metric_rows = "".join(f"<tr><td>{_e(task)}</td><td>{number}</td><td>{_e(name)}</td>"
                          f"<td class=metric>{_e(_cell(value))}</td></tr>"
                          for task, number, name, value in metrics)
    tasks = []
    for name, step in run.get("steps", {}).items():
        spans = [a["duration"] for a in step.get("attempts", []) if a.get("duration")]
        tasks.append({"name": name, "step": step.get("step", name),
                      "index": step.get("index", ()), "status": step.get("status", "?"),
                      "by_condition": step.get("by_condition", False),
                      "attempts": len(step.get("attempts", [])),
                      "duration": sum(spans) if spans else None})
    table = "".join(f"<tr><td><a href='#step-{_e(row[0].split('[')[0])}'>{_e(row[0])}</a></td>"
                    f"<td class='status {_e(row[1].split()[-1])}'>{_e(row[1])}</td>"
                    f"<td>{_e(row[2])}</td><td>{_e(row[3])}</td></tr>"
                    for row in task_rows(tasks, run.get("order", ())))
    sections = []
    seen_steps: set[str] = set()
    for task, step in run.get("steps", {}).items():
        anchor = step.get("step", task)
        ident = f" id='step-{_e(anchor)}'" if anchor not in seen_steps else ""
        seen_steps.add(anchor)
        parts = [f"<section class=step{ident}><h3>{_e(task)} <span class='status "
                 f"{_e(step.get('status'))}'>{_e(step.get('status'))}</span></h3>"]
        if step.get("reason"):
            parts.append(f"<p class=muted>{_e(step['reason'])}</p>")
        source = step.get("cached_from")
        if step.get("status") == "cached" and isinstance(source, dict) and source.get("run"):
            made = str(source["run"])
            parts.append(f"<p class=muted>{'reused' if source.get('resumed') else 'cached'}: "
                         f"outputs of run <a href='/run/{quote(made)}'>{_e(made[:8])}</a>"
                         + (f" (task {_e(source['task'])})" if source.get("task") not in
                            (None, task) else "") + "</p>")
        for output, stored in (step.get("outputs") or {}).items():
            value = _small(stored, run["folder"])
            parts.append(f"<p>output <b>{_e(output)}</b>: {_e(stored.get('type'))} "
                         f"({_e(stored.get('backend'))}, {_e(stored.get('size'))} bytes)"
                         + (f" = <code>{_e(value)}</code>" if value is not None else "") +
                         "</p>")
        attempts = step.get("attempts", [])
        for attempt in attempts:
            number = attempt.get("number", 0)
            error = attempt.get("error") or {}
            shown = bool(error) or attempt is attempts[-1]  # the last attempt, open
            parts.append(f"<details{' open' if shown else ''}><summary>attempt {number}: "
                         f"{_e(attempt.get('status'))}, {_e(took(attempt.get('duration')))}"
                         + (f": {_e(error.get('message', ''))}" if error else "") +
                         "</summary>")
            if error.get("traceback"):
                parts.append(f"<pre class=traceback>{_e(error['traceback'])}</pre>")
            if error.get("fix"):
                parts.append(f"<p>fix: {_e(error['fix'])}</p>")
            for name, value in (attempt.get("metrics") or {}).items():
                parts.append(f"<p class=metric-line>{_e(name)} = <b>"
                             f"{_e(_cell(value))}</b></p>")
            for name, entry in (attempt.get("artifacts") or {}).items():
                parts.append(_artifact_html(run_id, task, number, name, entry))
            parts.append(f"<pre class=log>{_e(_log_tail(attempt.get('log')))}</pre></details>")
        parts.append("</section>")
        sections.append("".join(parts))
    reason = f"<p>{_e(run['reason'])}</p>" if run.get("reason") else ""
    if run.get("resumed_from"):
        resumed = str(run["resumed_from"])
        reason += (f"<p class=resumed>resumed run <a href='/run/{quote(resumed)}'>"
                   f"{_e(resumed[:8])}</a>" + (f", from step {_e(run['from_step'])} on"
                                              if run.get("from_step") else "") + "</p>")
    tag = run.get("study")
    if isinstance(tag, dict) and isinstance(tag.get("id"), str):
        reason += (f"<p class=trial>trial {_e(tag.get('trial'))} of <a href='/study/"
                   f"{quote(tag['id'])}'>study {_e(tag['id'][:8])}</a></p>")
    body = (f"<h1>Run {_e(run_id[:8])} <span class='status {_e(run.get('status'))}'>"
            f"{_e(run.get('status'))}</span></h1>{reason}"
            f"<p class=muted>pipeline <a href='/?pipeline={quote(run.get('pipeline', ''))}'>"
            f"{_e(run.get('pipeline'))}</a> · started {_e(local_time(run.get('started')))} · took "
            f"{_e(took(run.get('duration')))} · {_e(run_id)}</p>"
            + (f"<h2>Parameters</h2><table>{parameters}</table>" if parameters else "") +
            f"<h2>DAG</h2>{dag_svg(run)}"
            f"<h2>Steps</h2><table><thead><tr><th>step</th><th>status</th><th>attempts</th>"
            f"<th>duration</th></tr></thead><tbody>{table}</tbody></table>"
            + (f"<h2>Metrics</h2><table id=metrics><thead><tr><th>step</th><th>attempt</th>"
               f"<th>metric</th><th>value</th></tr></thead><tbody>{metric_rows}</tbody></table>"
               if metrics else "") +
            f"<h2>Details</h2>{''.join(sections)}")
    return _page(f"Run {run_id[:8]}", body)


def _small(stored: dict[str, Any], folder: str) -> str | None:
    if stored.get("backend") != "json" or not isinstance(stored.get("size"), int) or \
            stored["size"] > 1024:
        return None
    from kale import marshal

    try:
        return _cell(marshal.load(stored, store=folder))
    except Exception:
        return None


def _log_tail(path: Any) -> str:
    if not isinstance(path, str):
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - LOG_TAIL))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def compare_page(store: Store, ids: list[str]) -> bytes:
    chosen = [run for run in (store.run(run_id) for run_id in ids) if run is not None]
    logged = [run_metrics(run) for run in chosen]
    parameters: dict[str, None] = {}
    names: dict[str, None] = {}
    for run, metrics in zip(chosen, logged, strict=True):
        parameters.update(dict.fromkeys(run.get("parameters") or {}))
        names.update(dict.fromkeys(metrics))
    missing = object()
    lines = [("pipeline", [run.get("pipeline") for run in chosen], True),
             ("status", [run.get("status") for run in chosen], True),
             ("duration", [took(run.get("duration")) for run in chosen], False),
             *((f"parameter {name}", [(run.get("parameters") or {}).get(name, missing)
                                      for run in chosen], True) for name in parameters),
             *((f"metric {name}", [metrics.get(name, missing) for metrics in logged], True)
               for name in names)]
    head = "".join(f"<th><a href=/run/{quote(run['id'])}>{_e(run['id'][:8])}</a></th>"
                   for run in chosen)
    rows = []
    for label, cells, compared in lines:
        differs = compared and any(cell != cells[0] for cell in cells[1:])
        rows.append(f"<tr class='{'differs' if differs else ''}'><th>{_e(label)}</th>" +
                    "".join(f"<td>{'-' if cell is missing else _e(_cell(cell))}</td>"
                            for cell in cells) + "</tr>")
    body = (f"<h1>Compare {len(chosen)} runs</h1><p class=muted>highlighted: differs between "
            f"the runs</p><table id=comparison><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
    return _page("Compare", body)


def _scatter_chart(title: str, points: list[tuple[float, float, str]], x_label: str,
                   y_label: str, ticks: list[str] | None = None) -> str:
    """A small SVG scatter chart (``ticks``: names of the whole-number x values, for a
    parameter whose values are choices)."""
    width, height, pad = 420, 220, 40
    if not points:
        return ""
    xs, ys = [x for x, _, _ in points], [y for _, y, _ in points]
    low_x, high_x, low_y, high_y = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (high_x - low_x) or 1.0, (high_y - low_y) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (pad + (x - low_x) / span_x * (width - 2 * pad),
                height - pad - (y - low_y) / span_y * (height - 2 * pad))

    marks = "".join(f"<circle cx={at(x, y)[0]:.1f} cy={at(x, y)[1]:.1f} r=4><title>"
                    f"{_e(label)}</title></circle>" for x, y, label in points)
    if ticks:
        axis = "".join(f"<text x={at(index, low_y)[0]:.1f} y={height - 24} class=tick "
                       f"text-anchor=middle>{_e(name)}</text>" for index, name in
                       enumerate(ticks))
    else:
        axis = (f"<text x={pad} y={height - 24} class=tick>{_e(metric_text(low_x))}</text>"
                f"<text x={width - pad} y={height - 24} class=tick text-anchor=end>"
                f"{_e(metric_text(high_x))}</text>")
    return (f"<figure class=chart><figcaption>{_e(title)}</figcaption>"
            f"<svg xmlns='http://www.w3.org/2000/svg' width={width} height={height} "
            f"viewBox='0 0 {width} {height}' role=img aria-label='{_e(title)}'>"
            f"<line class=axis x1={pad} y1={height - pad} x2={width - pad} y2={height - pad} />"
            f"<line class=axis x1={pad} y1={pad} x2={pad} y2={height - pad} />{axis}"
            f"<text x=4 y={height - pad} class=tick>{_e(metric_text(low_y))}</text>"
            f"<text x=4 y={pad} class=tick>{_e(metric_text(high_y))}</text>"
            f"<text x={width / 2} y={height - 2} class=label text-anchor=middle>"
            f"{_e(x_label)}</text><text x=12 y=20 class=label>{_e(y_label)}</text>"
            f"<g class=points>{marks}</g></svg></figure>")


def study_page(study: dict[str, Any]) -> bytes:
    """A study: its settings, the trials (sortable), the objective trial by trial with the best
    so far, and each parameter against the objective."""
    settings = study.get("settings") or {}
    space = settings.get("space") or {}
    objective = str(study.get("objective"))
    trials = [t for t in study.get("trials") or [] if isinstance(t, dict)]
    best = (study.get("best") or {}).get("trial")
    head = "".join(f"<th data-type={kind}>{_e(label)}</th>" for label, kind in (
        ("trial", "number"), ("status", "text"), (objective, "number"))) + \
        "".join(f"<th data-type=mixed class=param>{_e(name)}</th>" for name in space) + \
        "<th data-type=text>run</th><th data-type=number>duration</th>"
    rows = []
    for trial in trials:
        value, given = trial.get("value"), trial.get("parameters") or {}
        run = trial.get("run_id")
        cells = [f"<td data-sort={_e(trial.get('number'))}>{_e(trial.get('number'))}"
                 + (" ★" if trial.get("number") == best else "") + "</td>",
                 f"<td class='status {_e(trial.get('status'))}'>{_e(trial.get('status'))}"
                 + (f"<br><span class=muted>{_e(trial['error'])}</span>"
                    if trial.get("error") else "") + "</td>",
                 f"<td data-sort={_e(_sort_key(value) if value is not None else '')} "
                 f"class=metric>{_e('-' if value is None else _cell(value))}</td>"]
        cells += [f"<td data-sort={_e(_sort_key(given.get(name)))}>"
                  f"{_e(_cell(given.get(name)))}</td>" for name in space]
        cells.append(f"<td><a href=/run/{quote(run)}>{_e(run[:8])}</a></td>" if
                     isinstance(run, str) else "<td>-</td>")
        cells.append(f"<td data-sort={_e(trial.get('duration') or 0)}>"
                     f"{_e(took(trial.get('duration')))}</td>")
        rows.append(f"<tr{' class=best' if trial.get('number') == best else ''}>"
                    + "".join(cells) + "</tr>")
    done = [t for t in trials if isinstance(t.get("value"), (int, float))]
    maximize = study.get("goal") == "maximize"
    series, best_so_far, running = [], [], None
    for trial in sorted(done, key=lambda t: t.get("number", 0)):
        value = float(trial["value"])
        running = value if running is None else (max if maximize else min)(running, value)
        series.append((float(trial.get("number", 0)), value))
        best_so_far.append((float(trial.get("number", 0)), running))
    charts = _line_chart(f"{objective} by trial", series, "trial", objective,
                         [f"trial {int(x)}" for x, _ in series])
    charts += _line_chart(f"best {objective} so far", best_so_far, "trial", objective,
                          [f"trial {int(x)}" for x, _ in best_so_far])
    for name, entry in space.items():
        choices = entry.get("values") if entry.get("kind") == "choice" else None
        points = []
        for trial in done:
            given = (trial.get("parameters") or {}).get(name)
            if choices is not None:
                if given not in choices:
                    continue
                x = float(choices.index(given))
            elif isinstance(given, (int, float)) and not isinstance(given, bool):
                x = float(given)
            else:
                continue
            points.append((x, float(trial["value"]), f"trial {trial.get('number')}: {name}="
                           f"{_cell(given)}, {objective}={_cell(trial['value'])}"))
        charts += _scatter_chart(f"{name} against {objective}", points, name, objective,
                                 [_cell(c) for c in choices] if choices is not None else None)
    from kale.tuning.study import space_text

    described = "; ".join(f"{_e(name)}: {_e(space_text(entry))}" for name, entry in
                          space.items())
    best_text = ""
    if study.get("best"):
        chosen = study["best"]
        best_text = (f"<p class=best>best {_e(objective)} = <b>{_e(_cell(chosen['value']))}"
                     f"</b> at trial {_e(chosen['trial'])}: " + ", ".join(
                         f"{_e(k)}={_e(_cell(v))}" for k, v in
                         (chosen.get("parameters") or {}).items()) + "</p>")
    body = (f"<h1>Study {_e(str(study.get('id'))[:8])} <span class='status "
            f"{_e(study.get('status'))}'>{_e(study.get('status'))}</span></h1>"
            + (f"<p>{_e(study['reason'])}</p>" if study.get("reason") else "") +
            f"<p class=muted>pipeline <a href='/?pipeline={quote(str(study.get('pipeline')))}'>"
            f"{_e(study.get('pipeline'))}</a> · {_e(study.get('goal'))} {_e(objective)} with "
            f"{_e(study.get('algorithm'))} · {len(trials)} of {_e(settings.get('max_trials'))} "
            f"trials · started {_e(local_time(study.get('started')))}</p>{best_text}"
            f"<p class=muted>space: {described}</p>"
            f"<h2>Trials</h2><table class=sortable id=trials><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            f"<h2>Charts</h2><div class=charts>{charts or '<p>no trial succeeded</p>'}</div>")
    return _page(f"Study {str(study.get('id'))[:8]}", body)


def charts_page(store: Store, pipeline: str) -> bytes:
    found = sorted((run for run in store.runs() if run.get("pipeline") == pipeline),
                   key=lambda run: run.get("started") or "")
    series: dict[str, list[tuple[float, float, str]]] = {}
    for index, run in enumerate(found):
        for name, value in (run.get("_metrics") or {}).items():
            series.setdefault(name, []).append((index + 1, value, run["id"][:8]))
    charts = "".join(_line_chart(name, [(x, y) for x, y, _ in points], "run (oldest first)",
                                 name, [label for _, _, label in points])
                     for name, points in series.items())
    body = (f"<h1>Metrics of {_e(pipeline)}</h1><p class=muted>{len(found)} runs · "
            f"<a href='/?pipeline={quote(pipeline)}'>their table</a></p>"
            + (charts or "<p>no metrics logged</p>"))
    return _page(f"Metrics of {pipeline}", body)


# -- the server -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    store: Store
    server_version = "kale-ui"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the terminal shows the URL, not every request

    def send(self, status: int, body: bytes, kind: str = "text/html; charset=utf-8",
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def not_found(self, what: str = "no such page") -> None:
        self.send(404, _page("Not found", f"<h1>Not found</h1><p>{_e(what)}</p>"))

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        parts = [unquote(part) for part in url.path.split("/") if part]
        try:
            if not parts:
                self.send(200, runs_page(self.store, (query.get("pipeline") or [""])[0]))
            elif parts[0] == "run" and len(parts) == 2:
                run = self.store.run(parts[1])
                if run is None:
                    self.not_found(f"no run {parts[1]}")
                else:
                    self.send(200, run_page(run))
            elif parts[0] == "study" and len(parts) == 2:
                study = self.store.study(parts[1])
                if study is None:
                    self.not_found(f"no study {parts[1]}")
                else:
                    self.send(200, study_page(study))
            elif parts[0] == "compare":
                self.send(200, compare_page(self.store, query.get("run", [])))
            elif parts[0] == "charts":
                self.send(200, charts_page(self.store, (query.get("pipeline") or [""])[0]))
            elif parts[0] == "artifact" and len(parts) == 5:
                self.artifact(*parts[1:])
            elif parts[0] == "static" and len(parts) == 2 and parts[1] in ("kale.css",
                                                                           "kale.js"):
                kind = "text/css" if parts[1].endswith(".css") else "text/javascript"
                self.send(200, (STATIC / parts[1]).read_bytes(), f"{kind}; charset=utf-8",
                          {"Cache-Control": "max-age=300"})
            else:
                self.not_found()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:  # a record Kale cannot read must not take the UI down
            import traceback

            self.send(500, _page("Error", f"<h1>This page failed</h1><pre>"
                                          f"{_e(traceback.format_exc())}</pre>"))
            del error

    def artifact(self, run_id: str, task: str, number: str, name: str) -> None:
        """An artifact's file, as its attempt's record names it, only if it lies in the run's
        own folder; HTML under a sandbox policy (no scripts, no same origin)."""
        from kale.marshal import is_inside

        run = self.store.run(run_id)
        attempts = ((run or {}).get("steps", {}).get(task) or {}).get("attempts") or []
        entry = next(((a.get("artifacts") or {}).get(name) for a in attempts
                      if str(a.get("number")) == number), None)
        if run is None or not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or not is_inside(entry["path"], run["folder"]):
            self.not_found("no such artifact")
            return
        try:
            data = Path(entry["path"]).read_bytes()
        except OSError:
            self.not_found("the artifact's file is gone")
            return
        self.send(200, data, _TYPES.get(entry.get("kind"), "application/octet-stream"),
                  {"Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
                   "style-src 'unsafe-inline'"})


def make_server(home: Path, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The UI's server over the runs in ``home``, bound to ``host`` (``port`` 0: a free one)."""
    handler = type("Handler", (_Handler,), {"store": Store(home)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_thread(home: Path, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start the UI in a thread (tests, notebooks); returns the server and its URL."""
    server = make_server(home, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
