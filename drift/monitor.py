"""The continuous loop's monitor: on a schedule, check drift and feedback, decide whether
to retrain from four triggers, run training (which gates and promotes), and write every
decision to an audit log (``.data/monitor/audit.jsonl``) and MLflow tags. The inference
service picks up a promoted champion by polling its alias.

Triggers:
- scheduled: the champion is older than ``MONITOR_RETRAIN_EVERY_S``;
- drift: a key feature at medium/high, or the score's PSI critical (>= 0.25);
- performance: recall (AUC) on fraud feedback over the window fell by more than
  ``MONITOR_RECALL_DROP`` (``MONITOR_AUC_DROP``) from the champion's ground-truth metrics at
  training (drift.performance; judged only with enough fraud labels);
- new pattern: a fraud scenario the champion's training data never showed, or the feedback
  fraud rate above ``MONITOR_FRAUD_RATE_JUMP`` times the rate at training.
One retrain at a time (a lock file), and none within ``MONITOR_COOLDOWN_S`` of the last, doubled
after each retrain in a row that the gate refused (up to 16x).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.settings import REPO_ROOT, StackSettings

log = logging.getLogger("drift.monitor")


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MONITOR_", extra="ignore")

    interval_s: float = Field(300.0, gt=0)
    window_s: float = Field(3600.0, gt=0)
    retrain_every_s: float = Field(24 * 3600.0, gt=0)
    cooldown_s: float = Field(1800.0, ge=0)
    min_scores: int = Field(500, ge=20)
    recall_drop: float = Field(0.2, gt=0, lt=1)
    auc_drop: float = Field(0.05, gt=0, lt=1)
    fraud_rate_jump: float = Field(2.0, gt=1)
    key_features: list[str] = Field(default_factory=lambda: [
        "amount", "txn_count_5m", "velocity_score", "geo_diversity_score", "amount_zscore_24h",
        "unique_countries_1h", "seconds_since_last_txn"])
    model_name: str = "fraud-detector"
    model_type: str = "xgboost"
    train_args: list[str] = Field(default_factory=lambda: ["--cv-folds", "0"])
    scores_topic: str = "scores"
    #: the online learner warm-starts a booster challenger every this many labels (0: never)
    warm_start_every: int = Field(5000, ge=0)
    feedback_topic: str = "fraud-feedback"


@dataclass
class Evidence:
    """What one check saw; the pure decision below reads only this."""

    champion_version: str | None
    champion_age_s: float | None
    drift_status: str | None = None
    drifted_key_features: list[str] = field(default_factory=list)
    score_psi: float | None = None
    scores_seen: int = 0
    recent_recall: float | None = None
    champion_recall: float | None = None
    recent_auc: float | None = None
    champion_auc: float | None = None
    performance_severity: str | None = None
    recent_fraud_rate: float | None = None
    champion_fraud_rate: float | None = None
    new_scenarios: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def decide(ev: Evidence, cfg: MonitorSettings) -> list[str]:
    """The triggers that fire (empty: nothing to do)."""
    triggers = []
    if ev.champion_version is None or (ev.champion_age_s is not None and ev.champion_age_s >= cfg.retrain_every_s):
        triggers.append("scheduled")
    if ev.drifted_key_features or (ev.score_psi is not None and ev.score_psi >= 0.25):
        triggers.append("drift")
    recall_fell = (ev.recent_recall is not None and ev.champion_recall is not None
                   and ev.recent_recall < ev.champion_recall - cfg.recall_drop)
    auc_fell = (ev.recent_auc is not None and ev.champion_auc is not None
                and ev.recent_auc < ev.champion_auc - cfg.auc_drop)
    if recall_fell or auc_fell:
        triggers.append("performance")
    if ev.new_scenarios or (ev.recent_fraud_rate is not None and ev.champion_fraud_rate
                            and ev.recent_fraud_rate > cfg.fraud_rate_jump * ev.champion_fraud_rate):
        triggers.append("new_pattern")
    return triggers


def retrain_history(audit_lines: list[str]) -> tuple[float | None, int]:
    """(time of the last retrain, retrains the gate refused in a row up to now)."""
    last, refused = None, 0
    for line in audit_lines:
        rec = json.loads(line)
        if rec.get("action") == "retrained":
            last = rec["at_epoch"]
            refused = refused + 1 if rec.get("gate") == "refused" else 0
    return last, refused


def backoff(cooldown_s: float, refused: int, cap: int = 4) -> float:
    """A shift the champion already handles as well as a retrained model (the gate refused the
    retrain) keeps firing the drift trigger: wait twice as long after each refusal in a row
    (at most 2**cap times), so a benign lasting shift does not retrain every cooldown."""
    return cooldown_s * 2 ** min(refused, cap)


class Monitor:
    def __init__(self, stack: StackSettings, cfg: MonitorSettings) -> None:
        self.stack, self.cfg = stack, cfg
        self.dir = stack.data_dir / "monitor"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.audit_path = self.dir / "audit.jsonl"
        self.lock = self.dir / "retrain.lock"

    # -- evidence -------------------------------------------------------------------------
    def evidence(self) -> Evidence:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from training import tracking

        tracking.connect(self.stack, lambda _m: None)
        client = MlflowClient()
        try:
            mv = client.get_model_version_by_alias(self.cfg.model_name, tracking.CHAMPION)
        except MlflowException:
            return Evidence(None, None)
        ev = Evidence(str(mv.version), time.time() - mv.creation_timestamp / 1000)
        self._check(ev)
        return ev

    def _check(self, ev: Evidence) -> None:
        """One drift_check over the window: feature and score drift, and performance on the
        fraud feedback that has arrived, against the champion's reference and metrics."""
        from drift.cli import check, parser
        from drift.sources import DriftInputError

        args = parser().parse_args(["--model-name", self.cfg.model_name, "--scores-topic", self.cfg.scores_topic,
                                    "--window", str(self.cfg.window_s), "--feedback-topic", self.cfg.feedback_topic,
                                    "--recall-drop", str(self.cfg.recall_drop)])
        try:
            result = check(args, self.stack)
        except DriftInputError as exc:
            ev.errors.append(f"drift: {exc}")
            return
        self._feedback(ev, result.get("performance"))
        ev.scores_seen = result["current"]["rows"]
        if ev.scores_seen < self.cfg.min_scores:
            ev.errors.append(f"drift: only {ev.scores_seen} scores in the window (minimum {self.cfg.min_scores})")
            return
        ev.drift_status = result["status"]
        ev.drifted_key_features = [f["feature"] for f in result["features"]
                                   if f["feature"] in self.cfg.key_features and f["effective"] in ("medium", "high")]
        if result["prediction"]:
            ev.score_psi = result["prediction"]["psi"]

    @staticmethod
    def _feedback(ev: Evidence, perf: dict[str, Any] | None) -> None:
        """Recall and AUC on the feedback for the window's scores, and the scenarios and fraud
        rate in it, against what the champion's training saw (drift.performance)."""
        if perf is None or not perf["rows_labelled"]:
            ev.errors.append(f"feedback: {perf.get('note') if perf else 'no scores to judge'}")
            return
        champion = perf.get("champion") or {}
        ev.performance_severity = perf["severity"]
        ev.recent_fraud_rate = perf["fraud_rate"]
        ev.champion_fraud_rate = champion.get("fraud_rate")
        if "recall_drop" in perf:  # judged: enough fraud labels and champion metrics
            ev.recent_recall, ev.champion_recall = perf["recall"], champion.get("recall")
            ev.recent_auc, ev.champion_auc = perf["auc"], champion.get("auc")
        elif perf.get("note"):
            ev.errors.append(f"feedback: {perf['note']}")
        if champion.get("scenarios"):
            ev.new_scenarios = sorted(set(perf["scenarios"]) - set(champion["scenarios"]) - {"none", "legit"})

    # -- acting ---------------------------------------------------------------------------
    def last_retrain(self) -> tuple[float | None, int]:
        """When the last retrain ran, and how many retrains in a row the gate refused."""
        return retrain_history(self.audit_path.read_text().splitlines() if self.audit_path.exists() else [])

    def retrain(self, triggers: list[str]) -> dict[str, Any]:
        from stack.services import stack_env

        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(self.stack)}
        cmd = [sys.executable, str(REPO_ROOT / "training" / "train.py"), "--model-type", self.cfg.model_type,
               "--registered-name", self.cfg.model_name, "--output-dir", str(self.dir / "last-run"),
               "--feedback-topic", self.cfg.feedback_topic, *self.cfg.train_args]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
        version = next((ln.split(" v")[1].split(",")[0] for ln in out.stdout.splitlines()
                        if ln.startswith("registered ")), None)
        gate = {0: "passed", 4: "refused"}.get(out.returncode, "error")
        return {"gate": gate, "exit_code": out.returncode, "version": version,
                "error": out.stderr.strip().splitlines()[-1] if out.returncode not in (0, 4) and out.stderr else None}

    def once(self) -> dict[str, Any]:
        now = time.time()
        ev = self.evidence()
        triggers = decide(ev, self.cfg)
        rec: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "at_epoch": now,
                               "triggers": triggers, "evidence": asdict(ev), "action": "none"}
        last, refused = self.last_retrain()
        cooldown = backoff(self.cfg.cooldown_s, refused)
        if triggers and last is not None and now - last < cooldown:
            rec["action"] = "cooldown"
            rec["reason"] = f"last retrain {now - last:.0f} s ago (cooldown {cooldown:.0f} s" + (
                f", doubled for each of {refused} refused retrains in a row)" if refused else ")")
        elif triggers:
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                rec["action"] = "skipped"
                rec["reason"] = "a retrain is already running"
            else:
                try:
                    os.write(fd, str(os.getpid()).encode())
                    rec.update(action="retrained", **self.retrain(triggers))
                finally:
                    os.close(fd)
                    self.lock.unlink(missing_ok=True)
                self._tag(rec)
        with self.audit_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        return rec

    def _tag(self, rec: dict[str, Any]) -> None:
        if not rec.get("version"):
            return
        from mlflow import MlflowClient

        MlflowClient().set_model_version_tag(self.cfg.model_name, rec["version"], "monitor_triggers",
                                             ",".join(rec["triggers"]))

    def run(self) -> None:
        while True:  # the first check after one interval: a fresh stack needs data first
            time.sleep(self.cfg.interval_s)
            try:
                rec = self.once()
                log.info("monitor: triggers %s, action %s", rec["triggers"], rec["action"])
            except Exception:  # one failed check must not end the loop
                log.exception("monitor check failed")


def last_decisions(stack: StackSettings, n: int = 3) -> list[dict[str, Any]]:
    path = stack.data_dir / "monitor" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()[-n:]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m drift", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["monitor", "once", "audit", "learn"],
                   help="monitor: the loop; once: one check now; audit: past decisions; learn: the online "
                        "learner in shadow (report in .data/monitor/online.json)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stack, cfg = StackSettings(), MonitorSettings()
    if args.command == "audit":
        for rec in last_decisions(stack, 20):
            print(f"{rec['at']}  triggers={','.join(rec['triggers']) or '-'}  action={rec['action']}"
                  f"{'  gate=' + rec['gate'] if rec.get('gate') else ''}"
                  f"{'  version=' + str(rec['version']) if rec.get('version') else ''}")
        return 0
    if args.command == "learn":
        from drift.online import LearnerMetrics, run
        from drift.warmstart import warm_start

        out = stack.data_dir / "monitor" / "online.json"
        out.parent.mkdir(parents=True, exist_ok=True)

        def challenger(window: Any) -> tuple[bool, str]:
            r = warm_start(stack, cfg.model_name, window)
            return r.version is not None, (
                f"v{r.champion_version} + {r.trees_after - r.trees_before} trees: gate {r.gate.verdict}"
                + (f", challenger v{r.version}" if r.version else ""))

        metrics = LearnerMetrics(stack.learner_metrics_port, stack.host)
        log.info("online learner: metrics on http://%s:%d/metrics, report in %s", stack.host,
                 stack.learner_metrics_port, out)
        run(stack.kafka_bootstrap, cfg.scores_topic, cfg.feedback_topic, out, warm_every=cfg.warm_start_every,
            on_warm=challenger, metrics=metrics)  # a new group each start: relearn the retained history
        return 0
    monitor = Monitor(stack, cfg)
    if args.command == "once":
        print(json.dumps(monitor.once(), indent=2, default=str))
        return 0
    monitor.run()
    return 0
