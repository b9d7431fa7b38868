"""Every CLI answers bad input with a non-zero exit, an ``error:`` line that says what is
wrong, and no traceback (issue 13: some printed tracebacks on a corrupt or missing file).
No service runs: those the CLIs would reach are pointed at closed ports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import REPO_ROOT
from stack import health

CASES = [
    (["drift_check.py", "--current", "{bad}", "--reference", "{bad}"], "cannot read"),
    (["drift_check.py", "--current", "{missing}", "--reference", "{missing}"], "file not found"),
    (["-m", "streaming", "generate", "--count", "10"], "not reachable"),
    (["-m", "streaming", "backfill", "--parquet", "{missing}"], "no such file"),
    (["-m", "streaming", "backfill", "--parquet", "{bad}"], "cannot read"),
    (["-m", "streaming", "backfill", "--parquet", "{bad}", "--cluster", "local:many"], "in-process, local:N"),
    (["-m", "streaming", "features", "card", "c1", "--at", "yesterday-ish"], "at"),
    (["-m", "streaming", "generate", "--rate", "-5"], "rate"),
    (["-m", "streaming", "generate", "--history", "2d", "--rate", "5"], "--history simulates the past"),
    (["-m", "streaming", "generate", "--history", "2d", "--start", "1790000000000"], "give one of them"),
    (["-m", "streaming", "generate", "--history", "soon"], "not a duration"),
    (["-m", "streaming", "generate", "--history", "0"], "positive duration"),
    (["training/train.py", "--model-type", "nope"], "nope"),
    (["training/train.py", "--model-type", "xgboost"], "no MLflow tracking server answers"),
    (["training/train.py", "--cluster", "local:2", "--model-type", "random_forest"], "trains in-process only"),
    (["training/train.py", "--cluster", "local:2", "--split", "stratified"], "splits by time only"),
    (["training/train.py", "--cluster", "somewhere"], "in-process, local:N"),
    (["-m", "training", "score", "--db", "sqlite:///{tmp}/s.db"], "MLflow"),
    (["-m", "training", "score", "--max-samples", "10", "--cluster", "local:2"], "drop --max-samples"),
    (["-m", "training", "score", "--task", "personalization", "--parquet", "{tmp}", "--max-samples", "5"],
     "drop --max-samples"),
    (["-m", "stack.secrets", "--kafka-broker", "{tmp}/k"], "STACK_KAFKA_SASL"),
    (["-m", "inference", "scorer", "--share", "5"], "share"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a[:3]) + f" [{n}]" for a, n in CASES])
def test_bad_input_is_one_error_line_without_traceback(args: list[str], needle: str, tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really a parquet file")
    paths = {"bad": str(tmp_path / "bad.parquet"), "missing": str(tmp_path / "missing.parquet"), "tmp": str(tmp_path)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACK_", "MLFLOW_", "KAFKA_", "REDIS_"))}
    mlflow, kafka, redis = health.free_ports(3)
    env.update({"PYTHONPATH": str(REPO_ROOT), "STACK_DATA_DIR": str(tmp_path / "data"),
                "STACK_MLFLOW_PORT": str(mlflow), "STACK_KAFKA_PORT": str(kafka),
                "STACK_REDIS_PORT": str(redis), "STACK_REDIS_TIMEOUT_S": "0.5"})
    proc = subprocess.run([sys.executable, *(a.format(**paths) for a in args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and needle.lower() in errors[0].lower(), out


@pytest.mark.parametrize(("var", "value", "needle"), [("STACK_SEED_HISTORY", "soon", "not a duration"),
                                                      ("STACK_KAFKA_PORT", "abc", "valid integer"),
                                                      ("STACK_CLUSTER", "everywhere", "tcp://host:port"),
                                                      ("STACK_OFFLINE_URL", "ftp://host/log", "must be one of s3")])
def test_a_bad_stack_setting_is_one_error_line(var: str, value: str, needle: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACK_")}
    env.update({"PYTHONPATH": str(REPO_ROOT), "STACK_DATA_DIR": str(tmp_path / "data"), var: value})
    proc = subprocess.run([sys.executable, "-m", "stack", "up"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and f"error: {var}={value}:" in proc.stderr
    assert needle in proc.stderr
