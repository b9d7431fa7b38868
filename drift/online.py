"""Online learning from delayed fraud feedback, in shadow: join each ``fraud-feedback``
label to the inputs that were scored (``scores``), score it with a River model *before*
learning from it (progressive validation), then ``learn_one``. The report compares, on the
same ground truth, the online learner with the champion that was trained on rule labels,
overall and per fraud scenario (including the one the rules do not describe)."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import kafka

log = logging.getLogger("drift.online")


def _model() -> Any:
    from river import linear_model, optim, preprocessing

    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


@dataclass
class _Tally:
    fraud: int = 0
    caught_online: int = 0
    caught_champion: int = 0


HISTORY = 200_000  # labels kept for the AUC of the report (memory stays bounded)


@dataclass
class OnlineLearner:
    threshold: float = 0.5
    model: Any = field(default_factory=_model)
    n: int = 0
    y: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY))
    p_online: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    p_champion: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
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

        k = min(last or len(self.y), len(self.y))
        y, po, pc = (np.asarray(h)[len(h) - k:] for h in (self.y, self.p_online, self.p_champion))
        out: dict[str, Any] = {"labels": int(len(y)), "fraud": int(y.sum())}
        if len(np.unique(y)) == 2:
            out["online"] = {"auc": float(roc_auc_score(y, po)), "pr_auc": float(average_precision_score(y, po))}
            out["champion"] = {"auc": float(roc_auc_score(y, pc)), "pr_auc": float(average_precision_score(y, pc))}
        out["per_scenario"] = {s: {"fraud": t.fraud, "online_recall": t.caught_online / t.fraud,
                                   "champion_recall": t.caught_champion / t.fraud}
                               for s, t in sorted(self.scenarios.items())}
        return out


class LearnerMetrics:
    """The online learner's Prometheus metrics (``online_*``), served on ``port``."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        from core.prom import single_process

        single_process()
        r = self.registry = CollectorRegistry()
        self.labels = Counter("online_labels_total", "Feedback labels joined to their scores and learned",
                              ["is_fraud"], registry=r)
        self.auc = Gauge("online_auc", "Progressive-validation AUC over the recent labels", ["model"], registry=r)
        self.pr_auc = Gauge("online_pr_auc", "Average precision over the recent labels", ["model"], registry=r)
        self.recall = Gauge("online_recall", "Recall on the fraud labels seen, per scenario", ["model", "scenario"],
                            registry=r)
        self.waiting = Gauge("online_join_waiting", "Scores waiting for feedback, feedback waiting for scores",
                             ["side"], registry=r)
        self.evicted = Gauge("online_join_evicted", "Join entries dropped at capacity", registry=r)
        self.warm = Counter("online_warm_starts_total", "Warm-started booster challengers by outcome",
                            ["outcome"], registry=r)
        self.invalid = Counter("online_invalid_records_total", "Records skipped because they break their "
                               "contract (not JSON, missing or out-of-range fields), by topic", ["topic"], registry=r)
        if port:
            start_http_server(port, addr=host, registry=r)

    def update(self, report: dict[str, Any], join: FeedbackJoin) -> None:
        for model in ("online", "champion"):
            if model in report:
                self.auc.labels(model).set(report[model]["auc"])
                self.pr_auc.labels(model).set(report[model]["pr_auc"])
        for scenario, t in report["per_scenario"].items():
            self.recall.labels("online", scenario).set(t["online_recall"])
            self.recall.labels("champion", scenario).set(t["champion_recall"])
        self.waiting.labels("scores").set(len(join.scores))
        self.waiting.labels("feedback").set(len(join.pending))
        self.evicted.set(join.evicted)


class FeedbackJoin:
    """Scores kept by event id (bounded, oldest dropped) until their feedback arrives."""

    def __init__(self, capacity: int = 500_000) -> None:
        self.capacity = capacity
        self.scores: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.pending: OrderedDict[str, tuple[bool, str]] = OrderedDict()  # feedback before its score
        self.evicted = 0
        self.ignored = 0  # scores from a source the learner does not learn from
        self.invalid = 0  # records that break their contract: skipped and counted, never a crash

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


def run(conn: kafka.Kafka, scores_topic: str, feedback_topic: str, out: Path, report_every_s: float = 30.0,
        stop: Any = None, group: str | None = None, warm_every: int = 0, on_warm: Any = None,
        window: int = 200_000, metrics: LearnerMetrics | None = None, recent: int = 20_000,
        sources: tuple[str, ...] = ("stream",)) -> OnlineLearner:
    """Consume both topics from the beginning, learn in shadow, write ``out`` (JSON) regularly.
    With ``warm_every`` > 0, every that many labels ``on_warm(labelled window)`` runs (a
    warm-started challenger, drift.warmstart) and returns (registered, summary); its failures
    are reported, not fatal. With
    ``metrics``, the Prometheus gauges follow the report over the last ``recent`` labels.

    Only scores whose ``source`` is in ``sources`` are learned from: by default those the
    stream scorer produced for transactions the pipeline consumed. A score an API caller
    asked for carries an event id of the caller's choosing, and learning the real label on
    the caller's features would let the caller teach the model (counted as ``ignored``)."""
    from collections import deque

    import pandas as pd
    from confluent_kafka import Consumer

    from core.contracts import FraudFeedback, InvalidEvent, decode_score, decode_versioned

    learner, join = OnlineLearner(), FeedbackJoin()
    labelled: deque[dict[str, Any]] = deque(maxlen=window)
    warm: list[dict[str, Any]] = []
    consumer = Consumer(kafka.client_config(conn, {"group.id": group or f"online-learner-{time.time_ns()}",
                                              "auto.offset.reset": "earliest", "enable.auto.commit": True}))
    consumer.subscribe([scores_topic, feedback_topic])
    next_report = time.monotonic() + report_every_s
    try:
        while stop is None or not stop.is_set():
            for m in consumer.consume(1000, 0.2):
                value = m.value()
                if m.error() is not None or value is None:
                    continue
                if m.topic() == scores_topic:
                    try:
                        rec = decode_score(value)
                    except InvalidEvent as exc:
                        _invalid(join, metrics, scores_topic, exc)
                        continue
                    if rec["source"] not in sources:
                        join.ignored += 1
                        continue
                    hit = join.add_score(rec)
                else:
                    try:
                        fb, _ = decode_versioned(value, FraudFeedback)
                    except InvalidEvent as exc:
                        _invalid(join, metrics, feedback_topic, exc)
                        continue
                    hit = join.add_feedback(fb.event_id, fb.is_fraud, fb.scenario)
                if hit is not None:
                    rec, is_fraud, scenario = hit
                    if metrics is not None:
                        metrics.labels.labels(str(bool(is_fraud)).lower()).inc()
                    learner.step(rec["features"], is_fraud, scenario, rec["fraud_probability"],
                                 rec.get("decision", "approve") != "approve")
                    labelled.append({"event_id": rec["event_id"], "event_time": rec.get("event_time", 0),
                                     **rec["features"], "is_fraud": is_fraud})
                    if warm_every and on_warm is not None and learner.n % warm_every == 0:
                        try:
                            registered, summary = on_warm(pd.DataFrame(labelled))
                            warm.append({"labels": learner.n, "result": summary})
                            outcome = "challenger" if registered else "refused"
                        except Exception as exc:  # not enough labels yet, no champion...: report, go on
                            warm.append({"labels": learner.n, "error": f"{type(exc).__name__}: {exc}"})
                            outcome = "error"
                        if metrics is not None:
                            metrics.warm.labels(outcome).inc()
            if time.monotonic() >= next_report:
                _publish(learner, join, warm, out, metrics, recent)
                next_report = time.monotonic() + report_every_s
    finally:
        consumer.close()
        _publish(learner, join, warm, out, metrics, recent)
    return learner


def _invalid(join: FeedbackJoin, metrics: LearnerMetrics | None, topic: str, exc: Exception) -> None:
    join.invalid += 1
    if metrics is not None:
        metrics.invalid.labels(topic).inc()
    if join.invalid <= 10 or join.invalid % 1000 == 0:  # the reason, without flooding the log
        log.warning("skipped an invalid record on %s (%d so far): %s", topic, join.invalid, exc)


def _publish(learner: OnlineLearner, join: FeedbackJoin, warm: list[dict[str, Any]], out: Path,
             metrics: LearnerMetrics | None, recent: int) -> None:
    """The report to ``out`` (JSON) and, over the last ``recent`` labels, to the metrics."""
    last = learner.report(recent)
    tmp = out.with_suffix(".tmp")  # readers never see a half-written report
    tmp.write_text(json.dumps({**learner.report(), "recent": last, "evicted": join.evicted,
                               "ignored_scores": join.ignored,
                               "invalid_records": join.invalid, "warm_starts": warm[-50:]}, indent=2))
    tmp.replace(out)
    if metrics is not None:
        metrics.update(last, join)
