"""Hyperparameter search on the validation set (PR-AUC): grid, random or optuna."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

from training.errors import TrainingError

Objective = Callable[[dict[str, Any]], float]


def _grid(space: dict[str, list]) -> list[dict[str, Any]]:
    keys = sorted(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(space[k] for k in keys))]


def _draw(rng: random.Random, values: list | dict[str, Any]) -> Any:
    if isinstance(values, list):
        return rng.choice(values)
    low, high = values["low"], values["high"]
    if not low <= high:
        raise TrainingError(f"search range needs low <= high, got {low} > {high}")
    if isinstance(low, int) and isinstance(high, int):
        if values.get("log"):
            return min(high, int(math.exp(rng.uniform(math.log(max(low, 1)), math.log(high + 1)))))
        return rng.randint(low, high)
    if values.get("log"):
        return math.exp(rng.uniform(math.log(float(low)), math.log(float(high))))
    return rng.uniform(float(low), float(high))


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
        ranges = sorted(k for k, v in space.items() if isinstance(v, dict))
        if kind == "grid" and ranges:
            raise TrainingError(f"a grid needs lists of values; {', '.join(ranges)} is a {{low, high}} range: "
                                "use --search random or optuna")
        if ranges:  # random over ranges: values drawn within them (log-uniform with log: true)
            rng = random.Random(seed)
            candidates = [{k: _draw(rng, v) for k, v in sorted(space.items())} for _ in range(n_trials)]
        else:  # random over lists: distinct combinations, without replacement
            candidates = _grid(space)
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
