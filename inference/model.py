"""The served model: the ONNX graph of a registry alias, checked and swapped atomically."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core import registry
from core.model_inputs import MODEL_FEATURES
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


class Refused(Exception):
    """A version the pipeline did not approve (core.registry.refusal); never served."""

    def __init__(self, version: str, reason: str, detail: str) -> None:
        super().__init__(f"refused v{version} ({reason}): {detail}")
        self.version, self.reason = version, reason


class ModelHolder:
    """The current champion (and challenger for shadow scoring). Readers take the reference
    once per request, so a swap never mixes two models within one request.

    Only signed, gated versions with the serving contract's features are loaded, and the
    champion only when the newest signed promotion names it (core/registry.py); a refused
    version keeps the last good model serving and is counted in ``refusals`` (once per
    version, not once per poll)."""

    def __init__(self, name: str, alias: str, threads: int = 1, shadow: bool = True,
                 verifier: registry.Verifier | None = None,
                 features: tuple[str, ...] | list[str] = MODEL_FEATURES) -> None:
        self.name, self.alias, self.threads, self.shadow = name, alias, threads, shadow
        self.verifier, self.features = verifier, list(features)
        self.current: ServedModel | None = None
        self.challenger: ServedModel | None = None
        self.last_error: str | None = None
        self.refusals: dict[str, int] = {}
        #: the signed promotion record of the served champion (reason, labels, evidence)
        self.promotion: dict[str, Any] | None = None
        self._refused: set[str] = set()  # versions already refused (not downloaded again)
        self._lock = threading.Lock()  # one reload at a time

    def _refuse(self, version: str, reason: str, detail: str, key: str) -> Refused:
        if key not in self._refused:  # count each refusal once, not once per poll
            self._refused.add(key)
            self.refusals[reason] = self.refusals.get(reason, 0) + 1
        return Refused(version, reason, detail)

    def _promotion_check(self, pointed: str) -> dict[str, Any] | None:
        """Before downloading: the champion alias must be where the newest signed promotion put
        it. Returns that promotion record (None without a verifier or for another alias)."""
        if self.verifier is None or self.alias != tracking.CHAMPION:
            return None
        record = registry.signed_champion(self.name, self.verifier)
        if record is None or record.get("version") != pointed:
            raise self._refuse(pointed, "promotion", (
                f"{self.name}@{self.alias} points to v{pointed} but no signed promotion names it (the newest names "
                f"{('v' + record['version']) if record else 'none'})"), f"{pointed}@{(record or {}).get('seq')}")
        return record

    def _checked(self, reg: tracking.RegisteredModel | None) -> tracking.RegisteredModel | None:
        """``reg`` if the pipeline approved it; else Refused (and remembered: not fetched again)."""
        if reg is None or self.verifier is None:
            return reg
        why = registry.refusal(reg.name, reg.version, reg.onnx, reg.metadata, reg.tags, self.verifier, self.features)
        if why is not None:
            raise self._refuse(reg.version, *why, key=reg.version)
        return reg

    def reload(self) -> tuple[bool, str]:
        """Load the alias if it moved. Returns (changed, message); keeps the last good model
        when the new one fails to download, verify or pass the smoke check."""
        with self._lock:
            try:
                # a poll asks the registry for the alias's version; the graph is downloaded
                # only when that version is not the one served
                served = self.current.version if self.current is not None else None
                pointed = tracking.alias_version(self.name, self.alias)
                reg, record = None, None
                if pointed not in (None, served):
                    record = self._promotion_check(pointed)  # type: ignore[arg-type]
                    if pointed in self._refused:
                        raise Refused(pointed, "refused", "refused before; waiting for the alias to move")  # type: ignore[arg-type]
                    reg = self._checked(tracking.load(self.name, self.alias))
                if pointed is None or (reg is None and pointed != served):
                    self.last_error = f"{self.name}@{self.alias} is not set; train a model first"
                    return False, self.last_error
                if reg is None:
                    changed, msg = False, f"{self.name} v{pointed} already served"
                else:
                    model = build(reg, self.threads)
                    old = self.current
                    self.current = model  # the atomic swap
                    self.promotion = record
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
            elif pointed in self._refused:
                self.challenger = None
            elif self.challenger is None or self.challenger.version != pointed:
                reg = self._checked(tracking.load(self.name, tracking.CHALLENGER))
                comparable = reg is not None and (cur is None or reg.features == cur.features)
                self.challenger = build(reg, self.threads) if comparable and reg is not None else None
        except Exception as exc:
            log.warning("challenger not loaded: %s", exc)
            self.challenger = None
