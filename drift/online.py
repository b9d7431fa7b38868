"""Online learning from delayed fraud feedback, in shadow: join each ``fraud-feedback``
label to the inputs that were scored (``scores``), score it with a River model *before*
learning from it (progressive validation), then ``learn_one``. The report compares, on the
same ground truth, the online learner with the champion that was trained on rule labels,
overall and per fraud scenario (including the one the rules do not describe)."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def _model() -> Any:
    from river import linear_model, optim, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


@dataclass
class _Tally:
    fraud: int = 0
    caught_online: int = 0
    caught_champion: int = 0


@dataclass
class OnlineLearner:
    threshold: float = 0.5
    model: Any = field(default_factory=_model)
    n: int = 0
    y: list[int] = field(default_factory=list)
    p_online: list[float] = field(default_factory=list)
    p_champion: list[float] = field(default_factory=list)
    scenarios: dict[str, _Tally] = field(default_factory=dict)

    def step(self, x: dict[str, float], is_fraud: bool, scenario: str, champion_p: float,
             champion_flagged: bool) -> float:
        """Predict, record, then learn (progressive validation)."""
        p = float(self.model.predict_proba_one(x).get(True, 0.0))
        self.model.learn_one(x, bool(is_fraud))
        self.n += 1
        self.y.append(int(is_fraud))
        self.p_online.append(p)
        self.p_champion.append(float(champion_p))
        if is_fraud:
            t = self.scenarios.setdefault(scenario, _Tally())
            t.fraud += 1
            t.caught_online += p >= self.threshold
            t.caught_champion += bool(champion_flagged)
        return p

    def report(self, last: int | None = None) -> dict[str, Any]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        y = np.array(self.y[-last:] if last else self.y)
        po = np.array(self.p_online[-len(y):])
        pc = np.array(self.p_champion[-len(y):])
        out: dict[str, Any] = {"labels": int(len(y)), "fraud": int(y.sum())}
        if len(np.unique(y)) == 2:
            out["online"] = {"auc": float(roc_auc_score(y, po)), "pr_auc": float(average_precision_score(y, po))}
            out["champion"] = {"auc": float(roc_auc_score(y, pc)), "pr_auc": float(average_precision_score(y, pc))}
        out["per_scenario"] = {s: {"fraud": t.fraud, "online_recall": t.caught_online / t.fraud,
                                   "champion_recall": t.caught_champion / t.fraud}
                               for s, t in sorted(self.scenarios.items())}
        return out


class FeedbackJoin:
    """Scores kept by event id (bounded, oldest dropped) until their feedback arrives."""

    def __init__(self, capacity: int = 500_000) -> None:
        self.capacity = capacity
        self.scores: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.pending: OrderedDict[str, tuple[bool, str]] = OrderedDict()  # feedback before its score
        self.evicted = 0

    def _trim(self, d: OrderedDict) -> None:
        while len(d) > self.capacity:
            d.popitem(last=False)
            self.evicted += 1

    def add_score(self, rec: dict[str, Any]) -> tuple[dict[str, Any], bool, str] | None:
        eid = rec["event_id"]
        if eid in self.pending:
            is_fraud, scenario = self.pending.pop(eid)
            return rec, is_fraud, scenario
        self.scores[eid] = rec
        self._trim(self.scores)
        return None

    def add_feedback(self, event_id: str, is_fraud: bool, scenario: str
                     ) -> tuple[dict[str, Any], bool, str] | None:
        rec = self.scores.pop(event_id, None)
        if rec is None:
            self.pending[event_id] = (is_fraud, scenario)
            self._trim(self.pending)
            return None
        return rec, is_fraud, scenario


def run(bootstrap: str, scores_topic: str, feedback_topic: str, out: Path, report_every_s: float = 30.0,
        stop: Any = None, group: str | None = None, warm_every: int = 0, on_warm: Any = None,
        window: int = 200_000) -> OnlineLearner:
    """Consume both topics from the beginning, learn in shadow, write ``out`` (JSON) regularly.
    With ``warm_every`` > 0, every that many labels ``on_warm(labelled window)`` runs (a
    warm-started challenger, drift.warmstart); its failures are reported, not fatal."""
    from collections import deque

    import orjson
    import pandas as pd
    from confluent_kafka import Consumer

    from core.contracts import FraudFeedback, InvalidEvent, decode

    learner, join = OnlineLearner(), FeedbackJoin()
    labelled: deque[dict[str, Any]] = deque(maxlen=window)
    warm: list[dict[str, Any]] = []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"online-learner-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    consumer.subscribe([scores_topic, feedback_topic])
    next_report = time.monotonic() + report_every_s
    try:
        while stop is None or not stop.is_set():
            for m in consumer.consume(1000, 0.2):
                value = m.value()
                if m.error() is not None or value is None:
                    continue
                if m.topic() == scores_topic:
                    rec = orjson.loads(value)
                    hit = join.add_score(rec)
                else:
                    try:
                        fb = decode(value, FraudFeedback)
                    except InvalidEvent:
                        continue
                    hit = join.add_feedback(fb.event_id, fb.is_fraud, fb.scenario)
                if hit is not None:
                    rec, is_fraud, scenario = hit
                    learner.step(rec["features"], is_fraud, scenario, rec["fraud_probability"],
                                 rec.get("decision", "approve") != "approve")
                    labelled.append({"event_id": rec["event_id"], "event_time": rec.get("event_time", 0),
                                     **rec["features"], "is_fraud": is_fraud})
                    if warm_every and on_warm is not None and learner.n % warm_every == 0:
                        try:
                            warm.append({"labels": learner.n, "result": str(on_warm(pd.DataFrame(labelled)))})
                        except Exception as exc:  # not enough labels yet, no champion...: report, go on
                            warm.append({"labels": learner.n, "error": f"{type(exc).__name__}: {exc}"})
            if time.monotonic() >= next_report:
                out.write_text(json.dumps({**learner.report(), "evicted": join.evicted, "warm_starts": warm},
                                          indent=2))
                next_report = time.monotonic() + report_every_s
    finally:
        consumer.close()
        out.write_text(json.dumps({**learner.report(), "evicted": join.evicted, "warm_starts": warm}, indent=2))
    return learner
