"""Hyperparameter search on the validation set (PR-AUC): grid, random or optuna."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

from training.errors import TrainingError

Objective = Callable[[dict[str, Any]], float]


def _grid(space: dict[str, list]) -> list[dict[str, Any]]:
    keys = sorted(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(space[k] for k in keys))]


def run(kind: str, space: dict[str, Any], objective: Objective, n_trials: int, seed: int,
        progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Best params and every trial (params, score). Spaces are lists of values; optuna also
    takes ``{low, high, log}`` ranges."""
    if kind == "none" or not space:
        return {}, []
    for name, values in space.items():
        if not isinstance(values, list | dict) or (isinstance(values, list) and not values):
            raise TrainingError(f"search space {name!r} must be a non-empty list or a {{low, high}} range")
    trials: list[dict[str, Any]] = []
    if kind in ("grid", "random"):
        lists = {k: v if isinstance(v, list) else [v["low"], v["high"]] for k, v in space.items()}
        candidates = _grid(lists)
        if kind == "random":
            random.Random(seed).shuffle(candidates)
            candidates = candidates[:n_trials]
        for i, params in enumerate(candidates):
            trials.append({"params": params, "score": objective(params)})
            if progress:
                progress(i + 1, len(candidates))
    elif kind == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)

        def suggest(trial: Any) -> float:
            params: dict[str, Any] = {}
            for k, v in space.items():
                if isinstance(v, list):
                    params[k] = trial.suggest_categorical(k, v)
                elif isinstance(v["low"], int) and isinstance(v["high"], int):
                    params[k] = trial.suggest_int(k, v["low"], v["high"], log=bool(v.get("log")))
                else:
                    params[k] = trial.suggest_float(k, float(v["low"]), float(v["high"]), log=bool(v.get("log")))
            score = objective(params)
            trials.append({"params": params, "score": score})
            if progress:
                progress(len(trials), n_trials)
            return score

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(suggest, n_trials=n_trials)
    else:
        raise TrainingError(f"unknown search {kind!r}")
    best = max(trials, key=lambda t: t["score"])
    return best["params"], trials
