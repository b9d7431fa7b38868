"""Drift report renderings: a rich table, JSON, and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from drift.stats import FeatureDrift

COLOURS = {"none": "green", "low": "cyan", "medium": "yellow", "high": "red"}


def table(rows: list[FeatureDrift], status: str, actions: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("feature", "test", "statistic", "p-value", "PSI", "severity"):
        t.add_column(col, justify="left" if col in ("feature", "test") else "right")
    for r in rows:
        colour = COLOURS[r.effective]
        t.add_row(r.feature, r.test, f"{r.statistic:.4f}", f"{r.p_adjusted:.2e}", f"{r.psi:.3f} ({r.psi_band})",
                  f"[{colour}]{r.effective}[/{colour}]" + ("" if r.effective == r.severity else f" (p: {r.severity})"))
    c = Console()
    c.print(t)
    c.print(f"overall: [{COLOURS[status]}]{status}[/{COLOURS[status]}]")
    for a in actions:
        c.print(f"  - {a}")


def _plot(name: str, ref: np.ndarray, cur: np.ndarray) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.6))
    lo, hi = np.nanpercentile(np.concatenate([ref, cur]), [0.5, 99.5])
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
    a.hist(ref, bins=bins, alpha=0.55, density=True, label="reference")
    a.hist(cur, bins=bins, alpha=0.55, density=True, label="current")
    a.legend(fontsize=7)
    a.set_title(name, fontsize=9)
    for data, label in ((ref, "reference"), (cur, "current")):
        xs = np.sort(data)
        b.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=label)
    b.set_title("ECDF", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def html_page(result: dict[str, Any], reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> str:
    rows = "".join(
        f"<tr class='{r['effective']}'><td>{html.escape(r['feature'])}</td><td>{r['test']}</td>"
        f"<td>{r['statistic']:.4f}</td><td>{r['p_adjusted']:.2e}</td><td>{r['psi']:.3f} ({r['psi_band']})</td>"
        f"<td>{r['effective']}</td></tr>" for r in result["features"])
    def figure(name: str) -> str:
        png = _plot(name, reference[name], current[name])
        return f"<figure><img src='data:image/png;base64,{png}' alt='{html.escape(name)}'></figure>"

    plots = "".join(figure(r["feature"]) for r in result["features"])
    actions = "".join(f"<li>{html.escape(a)}</li>" for a in result["actions"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Drift report</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}} td:first-child{{text-align:left}}
tr.medium td{{background:#fff3cd}} tr.high td{{background:#f8d7da}} tr.low td{{background:#e7f5ff}}
figure{{display:inline-block;margin:4px}}</style></head><body>
<h1>Drift report: {html.escape(result['status'])}</h1>
<p>reference: {html.escape(result['reference']['source'])} ({result['reference']['rows']} rows);
current: {html.escape(result['current']['source'])} ({result['current']['rows']} rows);
significance level {result['significance_level']}, correction {result['correction']}.</p>
<ul>{actions}</ul>
<table><tr><th>feature</th><th>test</th><th>statistic</th><th>p-value</th><th>PSI</th><th>severity</th></tr>
{rows}</table>{plots}</body></html>"""
