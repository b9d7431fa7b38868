"""The evaluation gate: every check with its reason, pure logic over metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GateConfig:
    min_auc: float = 0.75
    max_ece: float = 0.05
    #: prediction distribution shift vs the champion on the same test rows
    max_psi: float = 0.25
    #: shared share of the top-10 features with the champion
    min_importance_overlap: float = 0.3
    #: the candidate may trail the champion by this much and still count as "not worse"
    tolerance: float = 0.0
    #: an AUC gain over the champion this large explains a shifted score distribution or
    #: changed feature importances (they guard against unexplained changes)
    clear_gain: float = 0.01


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    skipped: bool = False


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)
    forced: bool = False
    note: str = ""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        if self.passed:
            return "passed"
        return "failed (forced)" if self.forced else "failed"

    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "passed": self.passed, "forced": self.forced, "note": self.note,
                "checks": [asdict(c) for c in self.checks]}


def top_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    k = min(k, len(a), len(b))
    if k == 0:
        return 1.0
    return len(set(np.argsort(a)[::-1][:k]) & set(np.argsort(b)[::-1][:k])) / k


def evaluate(candidate: dict[str, float], baseline: dict[str, float] | None, champion: dict[str, float] | None,
             cfg: GateConfig, *, psi_vs_champion: float | None = None, importance_overlap: float | None = None,
             champion_note: str = "") -> GateResult:
    """``champion`` holds the champion's metrics on the same test set (None: no champion,
    or one that cannot be compared, explained by ``champion_note``)."""
    r = GateResult()
    auc = candidate["auc"]
    r.checks.append(Check("min_auc", bool(auc >= cfg.min_auc), f"AUC {auc:.4f} vs minimum {cfg.min_auc}"))
    e = candidate["ece"]
    r.checks.append(Check("calibration", bool(e <= cfg.max_ece), f"ECE {e:.4f} vs maximum {cfg.max_ece}"))
    if baseline is not None:
        ok = auc >= baseline["auc"] - cfg.tolerance
        r.checks.append(Check("beats_baseline", bool(ok),
                              f"AUC {auc:.4f} vs logistic-regression baseline {baseline['auc']:.4f}"))
    else:
        r.checks.append(Check("beats_baseline", True, "the model is the logistic-regression baseline", skipped=True))
    if champion is None:
        why = champion_note or "no champion yet"
        for name in ("beats_champion", "prediction_shift", "importance_stability"):
            r.checks.append(Check(name, True, why, skipped=True))
        return r
    better = (auc >= champion["auc"] - cfg.tolerance) and (candidate["f1"] >= champion["f1"] - cfg.tolerance)
    r.checks.append(Check("beats_champion", bool(better),
                          f"AUC {auc:.4f} vs {champion['auc']:.4f}, F1 {candidate['f1']:.4f} vs "
                          f"{champion['f1']:.4f} on the same test set"))
    gain = auc - champion["auc"]
    excuse = f"; allowed by a clear AUC gain of {gain:+.4f}" if gain >= cfg.clear_gain else ""
    if psi_vs_champion is not None:
        ok = psi_vs_champion < cfg.max_psi or bool(excuse)
        r.checks.append(Check("prediction_shift", bool(ok),
                              f"PSI of scores vs champion {psi_vs_champion:.4f} (maximum {cfg.max_psi})"
                              + (excuse if psi_vs_champion >= cfg.max_psi else "")))
    if importance_overlap is not None:
        ok = importance_overlap >= cfg.min_importance_overlap or bool(excuse)
        r.checks.append(Check("importance_stability", bool(ok),
                              f"top-10 feature overlap with champion {importance_overlap:.2f} "
                              f"(minimum {cfg.min_importance_overlap})"
                              + (excuse if importance_overlap < cfg.min_importance_overlap else "")))
    else:
        r.checks.append(Check("importance_stability", True, "champion has no importance record", skipped=True))
    return r


#: the checks that compare with the champion on the training labels: with ground truth deciding,
#: they are reported, not deciding (a model that wins on ground truth must not lose to rule labels)
CHAMPION_CHECKS = ("beats_champion", "prediction_shift", "importance_stability")


def with_ground_truth(result: GateResult, decides: bool, passed: bool, detail: str) -> GateResult:
    """The gate once the matured holdout has been judged (training.feedback.gate). When ground
    truth decides, it replaces the champion comparisons on the training labels, which stay in
    the report as informational."""
    checks = []
    for c in result.checks:
        if decides and c.name in CHAMPION_CHECKS and not c.skipped:
            checks.append(Check(c.name, True, f"{c.detail} (informational: ground truth decides)", skipped=True))
        else:
            checks.append(c)
    checks.append(Check("ground_truth", bool(passed) if decides else True, detail, skipped=not decides))
    return GateResult(checks)
