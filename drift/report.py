"""Drift report renderings: a rich table, JSON, and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from drift.stats import FeatureDrift

COLOURS = {"none": "green", "low": "cyan", "medium": "yellow", "high": "red"}


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _span(w: dict[str, Any]) -> str:
    from datetime import UTC, datetime

    a, b = (datetime.fromtimestamp(w[k] / 1000, UTC) for k in ("from_ms", "to_ms"))
    return f"{a:%m-%d %H:%M:%S}-{b:%H:%M:%S}" if a.date() == b.date() else f"{a:%m-%d %H:%M}-{b:%m-%d %H:%M}"


def _ci(ci: list[float] | tuple[float, float] | None) -> str:
    return "-" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"


def performance_table(perf: dict[str, Any]) -> Any:
    from rich.table import Table

    champ = perf.get("champion") or {}
    colour = COLOURS[perf["severity"]]
    t = Table(title=f"performance on {perf.get('label', 'fraud feedback')}: [{colour}]{perf['severity']}[/{colour}]"
                    + (f" ({perf['note']})" if perf.get("note") else ""))
    for col in ("window (UTC)", "rows", perf.get("positive", "fraud"), "AUC", "recall", "recall 95% CI", "FPR"):
        t.add_column(col, justify="left" if col.startswith("window") else "right")
    if champ:
        t.add_row("champion at training", "", "", _fmt(champ.get("auc")), _fmt(champ.get("recall")), "", "")
    if perf["rows_labelled"]:
        for w in perf["windows"]:
            t.add_row(_span(w), str(w["rows"]), str(w["fraud"]), _fmt(w["auc"]),
                      _fmt(w["recall"]), _ci(w["recall_ci95"]),
                      _fmt(w["false_positive_rate"], ".4f"))
        t.add_row("all labelled", str(perf["rows"]), str(perf["fraud"]), _fmt(perf["auc"]), _fmt(perf["recall"]),
                  _ci(perf["recall_ci95"]), _fmt(perf["false_positive_rate"], ".4f"))
    return t


def table(rows: list[FeatureDrift], status: str, actions: list[str], title: str,
          performance: dict[str, Any] | None = None) -> None:
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
    if performance is not None:
        c.print(performance_table(performance))
    c.print(f"overall: [{COLOURS[status]}]{status}[/{COLOURS[status]}]")
    for a in actions:
        c.print(f"  - {a}")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    """The figure as base64 PNG (for a self-contained page); closes it."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    _pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plot(name: str, ref: np.ndarray, cur: np.ndarray) -> str:
    fig, (a, b) = _pyplot().subplots(1, 2, figsize=(8, 2.6))
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
    return _png(fig)


def _performance_plot(perf: dict[str, Any]) -> str:
    champ = perf.get("champion") or {}
    fig, ax = _pyplot().subplots(figsize=(6, 2.6))
    x = np.arange(len(perf["windows"]))
    for key, colour in (("recall", "C0"), ("auc", "C1")):
        ys = [np.nan if w[key] is None else w[key] for w in perf["windows"]]
        ax.plot(x, ys, "o-", color=colour, label=f"recent {key}")
        if champ.get(key) is not None:
            ax.axhline(champ[key], color=colour, ls="--", lw=1, label=f"champion {key}")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("window (oldest to newest)")
    ax.legend(fontsize=7)
    return f"<figure><img src='data:image/png;base64,{_png(fig)}' alt='performance'></figure>"


def html_page(result: dict[str, Any], reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> str:
    rows = "".join(
        f"<tr class='{r['effective']}'><td>{html.escape(r['feature'])}</td><td>{r['test']}</td>"
        f"<td>{r['statistic']:.4f}</td><td>{r['p_adjusted']:.2e}</td><td>{r['psi']:.3f} ({r['psi_band']})</td>"
        f"<td>{r['effective']}</td></tr>" for r in result["features"])
    def figure(name: str) -> str:
        png = _plot(name, reference[name], current[name])
        return f"<figure><img src='data:image/png;base64,{png}' alt='{html.escape(name)}'></figure>"

    plots = "".join(figure(r["feature"]) for r in result["features"])
    perf = result.get("performance")
    perf_html = ""
    if perf is not None:
        champ = perf.get("champion") or {}
        wrows = "".join(
            f"<tr><td>{_span(w)}</td><td>{w['rows']}</td><td>{w['fraud']}</td>"
            f"<td>{_fmt(w['auc'])}</td><td>{_fmt(w['recall'])}</td></tr>" for w in perf["windows"])
        label, positive = html.escape(perf.get("label", "fraud feedback")), html.escape(perf.get("positive", "fraud"))
        perf_html = (f"<h2>Performance on {label}: {html.escape(perf['severity'])}</h2>"
                     f"<p>{perf['rows_labelled']} labelled scores; AUC {_fmt(perf.get('auc'))}, recall "
                     f"{_fmt(perf.get('recall'))}; champion at training: AUC {_fmt(champ.get('auc'))}, recall "
                     f"{_fmt(champ.get('recall'))}. {html.escape(perf.get('note', ''))}</p>"
                     f"<table><tr><th>window (UTC)</th><th>rows</th><th>{positive}</th><th>AUC</th><th>recall</th></tr>"
                     f"{wrows}</table>" + (_performance_plot(perf) if perf["windows"] else ""))
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
{rows}</table>{perf_html}{plots}</body></html>"""
