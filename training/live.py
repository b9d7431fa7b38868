"""The served champion and its shadow challenger on live traffic, judged on matured ground truth.

The stream scorer publishes, for every transaction it scores, the champion's probability and
decision and the challenger's shadow probability. As fraud feedback matures, those rows get
labels (the rules of training/feedback.py: matured only, a decline stays unknown, an explored
decline weighs 1/p). This module joins them and reports each model's recall and precision at the
alert budget, and the ground-truth gate's verdict on the challenger: a challenger that wins on
live matured labels can be promoted on that evidence (``python -m training compare --live
--promote-if-better``). The monitor writes the same report to ``.data/monitor/live.json`` for
``make status``. The scores come from ``training.ground_truth.stream_scores``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from training import feedback, ground_truth


def report(scores: pd.DataFrame, truth: pd.DataFrame | None, maturity_ms: int, budget: float | None = None,
           min_fraud: int = 50, seed: int = 0) -> dict[str, Any]:
    """Per served version: matured rows, fraud, recall and precision at the budget; and, on the
    rows scored by both the newest champion and a shadow challenger, the ground-truth gate."""
    scores = scores[scores["p"].notna()]
    if scores.empty:
        return {"rows": 0, "note": "no scores from the stream scorer yet"}
    now = int(scores["event_time"].max())
    tl = feedback.truth_labels(ground_truth.align(scores["event_id"], truth), scores["event_time"].to_numpy(), now,
                               maturity_ms, scores["declined"].to_numpy(), scores["label_probability"].to_numpy())
    df = scores.assign(y=tl.y, known=tl.known, w=tl.w if tl.w is not None else 1.0)
    df = df[df["known"]]
    out: dict[str, Any] = {"rows": len(scores), "matured_rows": len(df), "fraud": int(df["y"].sum()),
                           "maturity_ms": maturity_ms, "labels": tl.summary}
    if df.empty:
        out["note"] = "no scored row has matured yet"
        return out
    newest = scores.sort_values("event_time")["version"].iloc[-1]
    mine = df[df["version"] == newest]
    flag_rate = float((mine["declined"]).mean()) if len(mine) else 0.0
    b = budget or (flag_rate if flag_rate > 0 else 0.01)
    out["budget"] = b
    out["by_version"] = {}
    for version, g in df.groupby("version"):
        y, p, w = g["y"].to_numpy(), g["p"].to_numpy(), g["w"].to_numpy()
        out["by_version"][str(version)] = {"rows": len(g), "fraud": int(y.sum()),
                                           **(feedback.at_budget(y, p, b, w) if y.any() else {})}
    out["champion"] = {"version": str(newest), **out["by_version"].get(str(newest), {})}
    pair = mine[mine["shadow_version"].ne("") & mine["shadow_p"].notna()]
    if len(pair):
        challenger = pair["shadow_version"].iloc[-1]
        pair = pair[pair["shadow_version"] == challenger]
        y = pair["y"].to_numpy()
        verdict = feedback.gate(y, pair["shadow_p"].to_numpy(), pair["p"].to_numpy(), b, pair["card_id"].to_numpy(),
                                (pair["event_time"] // feedback.DAY_MS).to_numpy(), min_fraud=min_fraud, seed=seed,
                                w=pair["w"].to_numpy())
        out["challenger"] = {"version": str(challenger), "rows": len(pair), "decides": verdict.decides,
                             "wins": verdict.decides and verdict.passed, "detail": verdict.detail,
                             **verdict.evidence.get("challenger", {})}
    return out
