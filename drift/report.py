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
    for col in ("window (UTC)", "rows", perf.get("positive", "fraud"), "AUC", "recall", "recall 95% CI", "FPR",
                "scores", "est. AUC", "est. recall (95%)", "est. precision"):
        t.add_column(col, justify="left" if col.startswith("window") else "right")
    if champ:
        t.add_row("champion at training", "", "", _fmt(champ.get("auc")), _fmt(champ.get("recall")), "", "",
                  "", "", "", "")
    for w in perf["windows"]:
        t.add_row(_span(w), str(w["rows"]), str(w["fraud"]), _fmt(w["auc"]), _fmt(w["recall"]), _ci(w["recall_ci95"]),
                  _fmt(w["false_positive_rate"], ".4f"), *_estimated_cells(w.get("estimated")))
    if perf["rows_labelled"] or perf.get("estimated"):
        t.add_row("all", str(perf.get("rows", 0)), str(perf.get("fraud", 0)), _fmt(perf.get("auc")),
                  _fmt(perf.get("recall")), _ci(perf.get("recall_ci95")),
                  _fmt(perf.get("false_positive_rate"), ".4f"), *_estimated_cells(perf.get("estimated")))
    if perf.get("estimated"):
        t.caption = ("est.: estimated before labels from the calibrated scores of every score in the window "
                     "(drift/estimate.py); right only while the calibration holds"
                     + (f". Note: {perf['estimated']['note']}" if perf["estimated"].get("note") else ""))
    return t


def _estimated_cells(est: dict[str, Any] | None) -> list[str]:
    if not est:
        return ["", "", "", ""]
    rec = est.get("recall") or {}
    return [str(est["rows"]), _fmt((est.get("auc") or {}).get("value")),
            f"{_fmt(rec.get('value'))} ({_ci(rec.get('ci95'))})", _fmt((est.get("precision") or {}).get("value"))]


def effect_text(effect: float, measure: str, material: bool) -> str:
    """The effect size with its measure: W (Wasserstein, in reference SDs) or JS (Jensen-Shannon),
    and "material" when the severity counts in full (drift/stats.py)."""
    return f"{effect:.3f} {'JS' if measure == 'jensen_shannon' else 'W'}" + (" material" if material else "")


def extras_lines(quality: dict[str, Any] | None, multivariate: dict[str, Any] | None,
                 segments: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    """(severity, text) lines for data quality, the domain classifier and the segments: the
    terminal prints them under the table, the HTML page as lists."""
    out: list[tuple[str, str]] = []
    if quality is not None:
        issues = quality["issues"]
        out.append((quality["status"], f"data quality: {quality['status']} ({len(issues)} issue(s))"))
        out += [(i["severity"], f"  {i['column']}: {i['check']}, {i['detail']}") for i in issues[:12]]
    if multivariate is not None:
        m = multivariate
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(m["top_features"].items())[:5])
        out.append((m["severity"], f"multivariate (domain classifier): {m['severity']}, held-out AUC {m['auc']:.3f} "
                                   f"(95% {m['low']:.3f}-{m['high']:.3f}; 0.5 = indistinguishable) on "
                                   f"{m['rows_reference']}+{m['rows_current']} rows; separates most by: {top or '-'}"))
    for seg in segments or []:
        moved = f": {', '.join(seg['drifted'][:6])}" if seg["drifted"] else ""
        out.append((seg["status"], f"segment {seg['segment']} ({seg['rows_reference']} vs {seg['rows_current']} "
                                   f"rows): {seg['status']}{moved}"))
    return out


def table(rows: list[FeatureDrift], status: str, actions: list[str], title: str,
          performance: dict[str, Any] | None = None, quality: dict[str, Any] | None = None,
          multivariate: dict[str, Any] | None = None, segments: list[dict[str, Any]] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("feature", "test", "statistic", "p-value", "PSI", "effect", "severity"):
        t.add_column(col, justify="left" if col in ("feature", "test") else "right")
    for r in rows:
        colour = COLOURS[r.effective]
        t.add_row(r.feature, r.test, f"{r.statistic:.4f}", f"{r.p_adjusted:.2e}", f"{r.psi:.3f} ({r.psi_band})",
                  effect_text(r.effect, r.effect_measure, r.material),
                  f"[{colour}]{r.effective}[/{colour}]" + ("" if r.effective == r.severity else f" (p: {r.severity})"))
    c = Console()
    c.print(t)
    if performance is not None:
        c.print(performance_table(performance))
    for sev, text in extras_lines(quality, multivariate, segments):
        c.print(f"[{COLOURS[sev]}]{text}[/{COLOURS[sev]}]", highlight=False)
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
    est = [(w.get("estimated") or {}).get("recall") or {} for w in perf["windows"]]
    if any(e.get("value") is not None for e in est):
        ys = [np.nan if e.get("value") is None else e["value"] for e in est]
        lo = [np.nan if not e.get("ci95") else e["ci95"][0] for e in est]
        hi = [np.nan if not e.get("ci95") else e["ci95"][1] for e in est]
        ax.plot(x, ys, "s:", color="C2", label="estimated recall")
        ax.fill_between(x, lo, hi, color="C2", alpha=0.15, lw=0)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("window (oldest to newest)")
    ax.legend(fontsize=7)
    return f"<figure><img src='data:image/png;base64,{_png(fig)}' alt='performance'></figure>"


def html_page(result: dict[str, Any], reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> str:
    thresholds = result.get("thresholds") or {}
    rows = "".join(
        f"<tr class='{r['effective']}'><td>{html.escape(r['feature'])}</td><td>{r['test']}</td>"
        f"<td>{r['statistic']:.4f}</td><td>{r['p_adjusted']:.2e}</td><td>{r['psi']:.3f} ({r['psi_band']})</td>"
        f"<td>{effect_text(r['effect'], r['effect_measure'], r['material'])}</td>"
        f"<td>{r['effective']}</td></tr>" for r in result["features"])
    def figure(name: str) -> str:
        png = _plot(name, reference[name], current[name])
        return f"<figure><img src='data:image/png;base64,{png}' alt='{html.escape(name)}'></figure>"

    plots = "".join(figure(r["feature"]) for r in result["features"])
    perf = result.get("performance")
    lines = extras_lines(result.get("quality"), result.get("multivariate"), result.get("segments"))
    extras = ("<h2>Data quality, multivariate and segment drift</h2><ul>" + "".join(
        f"<li class='{sev}'>{html.escape(text.strip())}</li>" for sev, text in lines) + "</ul>") if lines else ""
    perf_html = ""
    if perf is not None:
        champ = perf.get("champion") or {}
        wrows = "".join(
            f"<tr><td>{_span(w)}</td><td>{w['rows']}</td><td>{w['fraud']}</td>"
            f"<td>{_fmt(w['auc'])}</td><td>{_fmt(w['recall'])}</td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in _estimated_cells(w.get("estimated"))) + "</tr>"
            for w in perf["windows"])
        label, positive = html.escape(perf.get("label", "fraud feedback")), html.escape(perf.get("positive", "fraud"))
        perf_html = (f"<h2>Performance on {label}: {html.escape(perf['severity'])}</h2>"
                     f"<p>{perf['rows_labelled']} labelled scores; AUC {_fmt(perf.get('auc'))}, recall "
                     f"{_fmt(perf.get('recall'))}; champion at training: AUC {_fmt(champ.get('auc'))}, recall "
                     f"{_fmt(champ.get('recall'))}. {html.escape(perf.get('note', ''))}</p>"
                     f"<p>est.: estimated before labels arrive from the calibrated probabilities of every score "
                     f"(confidence-based performance estimation); right only while the calibration holds.</p>"
                     f"<table><tr><th>window (UTC)</th><th>rows</th><th>{positive}</th><th>AUC</th><th>recall</th>"
                     f"<th>scores</th><th>est. AUC</th><th>est. recall (95%)</th><th>est. precision</th></tr>"
                     f"{wrows}</table>" + (_performance_plot(perf) if perf["windows"] else ""))
    actions = "".join(f"<li>{html.escape(a)}</li>" for a in result["actions"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Drift report</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}} td:first-child{{text-align:left}}
tr.medium td{{background:#fff3cd}} tr.high td{{background:#f8d7da}} tr.low td{{background:#e7f5ff}}
li.medium{{background:#fff3cd}} li.high{{background:#f8d7da}}
figure{{display:inline-block;margin:4px}}</style></head><body>
<h1>Drift report: {html.escape(result['status'])}</h1>
<p>reference: {html.escape(result['reference']['source'])} ({result['reference']['rows']} rows);
current: {html.escape(result['current']['source'])} ({result['current']['rows']} rows);
significance level {result['significance_level']}, correction {result['correction']}.</p>
<ul>{actions}</ul>
<p>A shift counts beyond "low" only when it is material: its effect size (W: Wasserstein distance in
reference standard deviations, JS: Jensen-Shannon distance of category shares) reaches its threshold
({thresholds.get('wasserstein', 0.1)} W, {thresholds.get('jensen_shannon', 0.1)} JS),
or its PSI is not healthy.</p>
<table><tr><th>feature</th><th>test</th><th>statistic</th><th>p-value</th><th>PSI</th><th>effect</th><th>severity</th></tr>
{rows}</table>{extras}{perf_html}{plots}</body></html>"""
