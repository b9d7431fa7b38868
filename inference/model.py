"""The served model: the ONNX graph of a registry alias, checked and swapped atomically."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from training import export, tracking
from training.errors import TrainingError

log = logging.getLogger("inference.model")


@dataclass(frozen=True)
class ServedModel:
    name: str
    version: str
    alias: str
    sha256: str
    session: Any
    features: list[str]
    threshold: float
    metadata: dict[str, Any]
    tags: dict[str, str]
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    #: precomputed for explanations: importance / std per feature, and the means
    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def score(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.session.run([export.OUTPUT], {export.INPUT: X})[0]


def build(reg: tracking.RegisteredModel, threads: int = 1) -> ServedModel:
    """Session and smoke check: a default row must score a finite probability."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(reg.onnx, opts, providers=["CPUExecutionProvider"])
    n = len(reg.features)
    if n == 0:
        raise TrainingError(f"{reg.name} v{reg.version} has no feature list in its metadata")
    mean = np.asarray(reg.metadata.get("feature_mean", [0.0] * n), dtype=np.float64)
    std = np.asarray(reg.metadata.get("feature_std", [1.0] * n), dtype=np.float64)
    imp = np.asarray(reg.metadata.get("importance", [1.0] * n), dtype=np.float64)
    if "feature_mean" not in reg.metadata:  # an older model: no notion of "usual", no feature reasons
        imp = np.zeros(n)
    model = ServedModel(reg.name, reg.version, reg.alias or "", export.sha256(reg.onnx), sess, reg.features,
                        reg.threshold, reg.metadata, reg.tags, weight=imp / np.where(std > 0, std, 1.0), mean=mean,
                        std=std)
    probe = model.score(mean.astype(np.float32).reshape(1, -1))
    if probe.shape != (1,) or not np.isfinite(probe).all() or not 0.0 <= float(probe[0]) <= 1.0:
        raise TrainingError(f"{reg.name} v{reg.version} failed the smoke check (scored {probe!r})")
    return model


class ModelHolder:
    """The current champion (and challenger for shadow scoring). Readers take the reference
    once per request, so a swap never mixes two models within one request."""

    def __init__(self, name: str, alias: str, threads: int = 1, shadow: bool = True) -> None:
        self.name, self.alias, self.threads, self.shadow = name, alias, threads, shadow
        self.current: ServedModel | None = None
        self.challenger: ServedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one reload at a time

    def reload(self) -> tuple[bool, str]:
        """Load the alias if it moved. Returns (changed, message); keeps the last good model
        when the new one fails to download, verify or pass the smoke check."""
        with self._lock:
            try:
                # a poll asks the registry for the alias's version; the graph is downloaded
                # only when that version is not the one served
                served = self.current.version if self.current is not None else None
                pointed = tracking.alias_version(self.name, self.alias)
                reg = tracking.load(self.name, self.alias) if pointed not in (None, served) else None
                if pointed is None or (reg is None and pointed != served):
                    self.last_error = f"{self.name}@{self.alias} is not set; train a model first"
                    return False, self.last_error
                if reg is None:
                    changed, msg = False, f"{self.name} v{pointed} already served"
                else:
                    model = build(reg, self.threads)
                    old = self.current
                    self.current = model  # the atomic swap
                    changed, msg = True, (f"serving {self.name} v{model.version}"
                                          + (f" (was v{old.version})" if old else ""))
                    log.info(msg)
                self.last_error = None
            except Exception as exc:  # keep serving the last good model
                self.last_error = f"reload failed, still serving " \
                                  f"{('v' + self.current.version) if self.current else 'nothing'}: {exc}"
                log.warning(self.last_error)
                return False, self.last_error
            if self.shadow:
                self._load_challenger()
            return changed, msg

    def _load_challenger(self) -> None:
        try:
            pointed = tracking.alias_version(self.name, tracking.CHALLENGER)
            cur = self.current
            if pointed is None or (cur is not None and pointed == cur.version):
                self.challenger = None
            elif self.challenger is None or self.challenger.version != pointed:
                reg = tracking.load(self.name, tracking.CHALLENGER)
                comparable = reg is not None and (cur is None or reg.features == cur.features)
                self.challenger = build(reg, self.threads) if comparable and reg is not None else None
        except Exception as exc:
            log.warning("challenger not loaded: %s", exc)
            self.challenger = None
