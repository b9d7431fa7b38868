"""``make bench NAME=inference``: open-loop load on ``POST /v1/score`` at fixed rates from a
loopback Go load generator (bench/loadgen, built with the machine's Go), for the ONNX Runtime
service and, in the same run, the same request path with native XGBoost ``predict_proba``, and
the ONNX service with two uvicorn workers (INFERENCE_WORKERS=2), the service with each request
scored on its own (``inference_micro_batching``'s baseline), and a bare ASGI hello world on the
same uvicorn settings (the framework ceiling: ``inference_vs_framework_ceiling``), and both the
service and the hello world on granian instead of uvicorn (``inference_granian_vs_uvicorn``).

Setup: 20k generated transactions of the last two hours; the cards' window states written to
Redis through the stream's own Feast sink; an XGBoost model trained on them, exported to ONNX
and registered (local sqlite MLflow) as the champion. Requests are those transactions with
new event ids (scored "now"). Env: BENCH_RATES (default 500,1000,1500,2000,3000), BENCH_SECONDS (15),
BENCH_INFERENCE_MODES (a subset of hello,onnx,onnx_no_batching,onnx_route,native,onnx_2_workers,
hello_granian,onnx_granian: printed only).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from bench.common import bench_stack, write_result
from core import feast_store
from core.settings import REPO_ROOT
from stack import health
from stack.services import stack_env


def _by_rate(rows: list[dict]) -> dict[str, dict]:
    """Each offered rate's achieved rate, p50, p99 and errors, keyed by the rate (for the JSON)."""
    return {str(int(r["rate"])): {k: r[k] for k in ("achieved_rps", "p50_ms", "p99_ms", "errors")} for r in rows}


#: the stages of a /v1/score request the API reports (inference_stage_seconds), in order
STAGES = ("parse", "queue", "pool_wait", "score", "wake", "await", "send", "server")


def _stage_buckets(port: int) -> dict[str, list[tuple[float, float]]]:
    """The API's ``inference_stage_seconds`` histogram now: stage -> [(le, cumulative count)]."""
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {BENCH_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    out: dict[str, list[tuple[float, float]]] = {}
    for line in text.splitlines():
        if line.startswith("inference_stage_seconds_bucket{"):
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            stage = labels.split('stage="', 1)[1].split('"', 1)[0]
            out.setdefault(stage, []).append((float("inf") if le == "+Inf" else float(le), float(value)))
    return {k: sorted(v) for k, v in out.items()}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """``histogram_quantile`` as Prometheus computes it: linear within the bucket holding the
    quantile (the last finite bound when it falls in +Inf)."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return lower


def _stages(before: dict[str, list[tuple[float, float]]], after: dict[str, list[tuple[float, float]]]) -> dict:
    """Per stage, over the requests between two snapshots: count, p50 and p99 in ms."""
    out = {}
    for stage in STAGES:
        a, b = after.get(stage, []), dict(before.get(stage, []))
        delta = [(le, count - b.get(le, 0.0)) for le, count in a]
        p50, p99 = _quantile(delta, 0.5), _quantile(delta, 0.99)
        out[stage] = {"count": int(delta[-1][1]) if delta else 0,
                      "p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
                      "p99_ms": round(p99 * 1000, 3) if p99 is not None else None}
    return out


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children so far."""
    import psutil

    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def _loadgen(cache: Path) -> Path:
    out = cache / "loadgen"
    src = REPO_ROOT / "bench" / "loadgen"
    if not out.exists() or out.stat().st_mtime < (src / "main.go").stat().st_mtime:
        subprocess.run(["go", "build", "-o", str(out), "."], cwd=src, check=True)
    return out


def _prepare(settings: Any, root: Path) -> tuple[list[bytes], Path]:
    """States online, a champion in MLflow; returns request bodies and the native model path."""
    import mlflow

    from core.contracts import Transaction
    from streaming.entities import CARD
    from streaming.generators.transactions import GenConfig, TransactionStream
    from streaming.processor import ProcessorConfig, process
    from streaming.sinks import FeastOnlineSink, OfflineLog, OnlineBatch
    from training import calibration, export, models, tracking
    from training.dataset import load
    from training.labels import label
    from training.splits import split

    now = int(time.time() * 1000)
    stream = TransactionStream(GenConfig(seed=3, users=4000, events_per_s=3.0, start_ms=now - 2 * 3600_000,
                                         feedback_delay_ms=0))
    txns: list[Transaction] = []
    for rec in stream:
        if rec.topic == "transactions":
            txns.append(msgspec.json.decode(rec.value, type=Transaction))
            if len(txns) >= 20_000:
                break
    states: dict[str, Any] = {}
    cfg = ProcessorConfig()
    offline = OfflineLog(feast_store.offline_dir(settings, ""))
    events, feats = [], []
    from streaming.entities import event_row

    for i, t in enumerate(txns):
        st = states.setdefault(t.card_id, CARD.state_type())
        res = process(st, t, cfg, i, CARD)
        events.append(event_row(t))
        feats.extend(res.feature_rows)
    offline.append("transactions", events)
    offline.append("card_txn_features", feats)
    batch = OnlineBatch()
    for card, st in states.items():
        batch.put(card, st.pack(), st.last_ts, now)
    FeastOnlineSink(feast_store.open_store(settings)).write(batch)

    ds = load(settings)
    y = label(ds.frame).y
    sp = split(ds.frame, y)
    X = ds.X
    fitted = models.fit("xgboost", X[sp.train], y[sp.train], X[sp.val], y[sp.val])
    native = root / "native.json"
    fitted.estimator.save_model(str(native))
    thr = 0.5
    onnx_model = export.build(fitted, X.shape[1], calibration.Calibrator("none"),
                              {"features": ds.features, "threshold": thr, "model_type": "xgboost",
                               "importance": [float(v) for v in fitted.importance()],
                               "feature_mean": [float(v) for v in X.mean(axis=0)],
                               "feature_std": [float(v) for v in X.std(axis=0)]})
    tracking.connect(settings, lambda _m: None)
    with mlflow.start_run():
        uri = tracking.log_onnx(onnx_model, X[:5], fitted.predict(X[:5]))
    version = tracking.register(uri, "fraud-detector", {"onnx_sha256": export.sha256(onnx_model), "gate": "passed"},
                                onnx_model.SerializeToString(), settings)
    tracking.promote("fraud-detector", version, "benchmark", settings)
    bodies = []
    for t in txns[-5000:]:
        d = msgspec.to_builtins(t)
        d["event_id"] = str(uuid.uuid4())
        d.pop("event_time")
        bodies.append(json.dumps(d).encode())
    return bodies, native


BENCH_KEY = f"bench-{uuid.uuid4().hex}"  # the servers' one key (every scope)


def _serve(env: dict[str, str], port: int, native: Path | None, log: Path, workers: int = 1,
           hello: bool = False, server: str = "uvicorn") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bench.inference_server", "--port", str(port), "--workers", str(workers),
           "--server", server]
    if native:
        cmd += ["--native", str(native)]
    if hello:
        cmd += ["--hello"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while health.http(f"http://127.0.0.1:{port}/ready", BENCH_KEY) is not None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"inference server did not get ready; see {log}")
        time.sleep(0.2)
    return proc


def run(console: Any) -> list[dict[str, Any]]:
    rates = [float(r) for r in os.environ.get("BENCH_RATES", "500,1000,1500,2000,3000").split(",")]
    seconds = float(os.environ.get("BENCH_SECONDS", "15"))
    with bench_stack(need=("redis", "kafka")) as stack, tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        settings = feast_store.isolated_copy(stack.settings, root)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        bodies, native = _prepare(settings, root)
        (root / "bodies.jsonl").write_bytes(b"\n".join(bodies) + b"\n")
        loadgen = _loadgen(settings.cache_dir)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings),
               "INFERENCE_SCORES_TOPIC": f"bench-scores-{uuid.uuid4().hex[:6]}", "INFERENCE_ADMIN_TOKEN": BENCH_KEY}
        # the API publishes every score: its topic must exist (the broker does not auto-create topics;
        # a missing one was dropped records and a slower producer in earlier runs)
        from stack.topics import ensure_topics

        ensure_topics(settings.kafka_bootstrap, [env["INFERENCE_SCORES_TOPIC"], "propensity-scores"], partitions=1)
        table: dict[str, list[dict[str, Any]]] = {}
        modes = ("hello", "onnx", "onnx_no_batching", "onnx_route", "native", "onnx_2_workers", "hello_granian",
                 "onnx_granian")
        only = os.environ.get("BENCH_INFERENCE_MODES")  # e.g. "hello,onnx" (the results need all)
        for mode in [m for m in modes if not only or m in only.split(",")]:
            port = health.free_port()
            # onnx_route: the same service with POST /v1/score answered by the FastAPI route
            # (INFERENCE_FAST_PATH=false), the path before inference/fastpath.py
            env["INFERENCE_FAST_PATH"] = "false" if mode == "onnx_route" else "true"
            # onnx_no_batching: each request scored on its own, up to 8 at a time on the pool (the
            # path before inference/coalesce.py)
            env["INFERENCE_COALESCE_MAX"] = "1" if mode == "onnx_no_batching" else "64"
            env["INFERENCE_SCORE_LANES"] = "8" if mode == "onnx_no_batching" else "2"
            server = _serve(env, port, native if mode == "native" else None, root / f"{mode}.log",
                            workers=2 if mode == "onnx_2_workers" else 1, hello=mode.startswith("hello"),
                            server="granian" if mode.endswith("_granian") else "uvicorn")
            profile = mode == "onnx"  # where the time goes: the API's own stage timings, and CPU
            try:
                table[mode] = []
                for rate in rates:
                    if profile:
                        stages0, cpu0 = _stage_buckets(port), _cpu_s(server.pid)
                        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    out = subprocess.run([str(loadgen), "-url", f"http://127.0.0.1:{port}/v1/score", "-token",
                                          BENCH_KEY, "-rate",
                                          str(rate), "-duration", f"{seconds}s", "-bodies",
                                          str(root / "bodies.jsonl")], capture_output=True, text=True, check=True)
                    row = json.loads(out.stdout)
                    if profile:
                        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
                        served = max(row["achieved_rps"] * seconds, 1.0)
                        row["server_cpu_ms_per_request"] = round((_cpu_s(server.pid) - cpu0) * 1000 / served, 3)
                        row["loadgen_cpu_ms_per_request"] = round(
                            (kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime) * 1000 / served, 3)
                        row["stages"] = _stages(stages0, _stage_buckets(port))
                        console.print("    server: " + ", ".join(
                            f"{k} p50 {v['p50_ms']} p99 {v['p99_ms']} ms" for k, v in row["stages"].items())
                            + f"; CPU per request: server {row['server_cpu_ms_per_request']} ms, "
                              f"load generator {row['loadgen_cpu_ms_per_request']} ms")
                    table[mode].append(row)
                    console.print(f"  {mode:<14} {rate:>6.0f} req/s: p50 {row['p50_ms']:.2f} p95 {row['p95_ms']:.2f} "
                                  f"p99 {row['p99_ms']:.2f} max {row['max_ms']:.1f} ms, errors {row['errors']}, "
                                  f"achieved {row['achieved_rps']:.0f}/s")
            finally:
                server.terminate()
                server.wait(30)

    def best(rows: list[dict[str, Any]]) -> float:
        ok = [r["rate"] for r in rows if r["errors"] == 0 and r["p99_ms"] <= 10.0]
        return max(ok) if ok else 0.0

    def at(rows: list[dict[str, Any]], rate: float) -> dict[str, Any]:
        return next((r for r in rows if r["rate"] == rate), rows[0])

    ref = 1000.0 if 1000.0 in rates else rates[0]
    params = {"rates": rates, "seconds_per_rate": seconds, "table": table, "workers": 1,
              "goals": "p99 <= 5 ms at 1000 req/s; >= 3000 req/s sustained by one instance"}
    if only:
        return []
    two = table["onnx_2_workers"]
    route = table["onnx_route"]
    return [
        write_result("inference_where_the_time_goes", f"p99 latency of POST /v1/score at {ref:.0f} req/s as the "
                     "client sees it (params: the server's own stage timings and CPU per request at each rate)",
                     at(table["onnx"], ref)["p99_ms"], "ms", False,
                     "bare ASGI hello world on the same uvicorn settings, same rate, same run",
                     at(table["hello"], ref)["p99_ms"],
                     {"rates": rates, "seconds_per_rate": seconds, "stages": list(STAGES),
                      "by_rate": {str(int(r["rate"])): {k: r.get(k) for k in (
                          "achieved_rps", "p50_ms", "p99_ms", "errors", "stages", "server_cpu_ms_per_request",
                          "loadgen_cpu_ms_per_request")} for r in table["onnx"]},
                      "hello": _by_rate(table["hello"]),
                      "stage_meaning": "parse: key check, body, validation; queue: until a lane takes the "
                                       "request's batch; pool_wait: the batch until a thread runs it; score: the "
                                       "batch's run (Feast read, features, ONNX, reasons, publish); wake: the run's "
                                       "end until the loop resumes the lane; await: the whole scoring call as the "
                                       "request sees it; send: the answer written; server: arrival at the fast "
                                       "path until sent. Client minus server: uvicorn's HTTP parsing, the kernel's "
                                       "loopback, and the load generator's own scheduling (same 2 cores)"}),
        write_result("inference_micro_batching", "highest achieved req/s over the offered rates, POST /v1/score "
                     "(fast path, single requests scored together while others are on the pool)",
                     max(r["achieved_rps"] for r in table["onnx"]), "req/s", True,
                     "each request scored on its own (INFERENCE_COALESCE_MAX=1, 8 at a time), same run",
                     max(r["achieved_rps"] for r in table["onnx_no_batching"]),
                     {"rates": rates, "seconds_per_rate": seconds,
                      **{mode: _by_rate(table[mode]) for mode in ("onnx", "onnx_no_batching")}}),
        write_result("inference_vs_framework_ceiling", "highest achieved req/s over the offered rates, POST "
                     "/v1/score (fast path, one worker)", max(r["achieved_rps"] for r in table["onnx"]), "req/s",
                     True, "bare ASGI hello world on the same uvicorn settings, same run (the framework ceiling)",
                     max(r["achieved_rps"] for r in table["hello"]),
                     {"rates": rates, "seconds_per_rate": seconds,
                      "hello": _by_rate(table["hello"]),
                      "score": _by_rate(table["onnx"])}),
        write_result("inference_granian_vs_uvicorn", "highest achieved req/s over the offered rates, POST /v1/score "
                     "(fast path, one worker) on granian (ASGI, uvloop, backpressure = INFERENCE_MAX_CONCURRENCY)",
                     max(r["achieved_rps"] for r in table["onnx_granian"]), "req/s", True,
                     "the same app on uvicorn (uvloop, httptools), same run",
                     max(r["achieved_rps"] for r in table["onnx"]),
                     {"rates": rates, "seconds_per_rate": seconds,
                      **{mode: _by_rate(table[mode]) for mode in ("onnx", "onnx_granian", "hello", "hello_granian")}}),
        write_result("inference_fast_path", "highest achieved req/s over the offered rates, POST /v1/score "
                     "through inference/fastpath.py", max(r["achieved_rps"] for r in table["onnx"]), "req/s", True,
                     "the FastAPI route (INFERENCE_FAST_PATH=false), same run",
                     max(r["achieved_rps"] for r in route),
                     {"rates": rates, "seconds_per_rate": seconds,
                      "fast": _by_rate(table["onnx"]),
                      "route": _by_rate(route)}),
        write_result("inference_max_rate_2_workers", "highest tested rate with p99 <= 10 ms and no errors",
                     best(two), "req/s", True, "one worker, same run", best(table["onnx"]),
                     {"rates": rates, "seconds_per_rate": seconds,
                      "p99_ms": {str(int(r["rate"])): r["p99_ms"] for r in two}}),
        write_result("inference_p99", f"p99 latency of POST /v1/score at {ref:.0f} req/s",
                     at(table["onnx"], ref)["p99_ms"], "ms", False, "same path with native predict_proba",
                     at(table["native"], ref)["p99_ms"], params),
        write_result("inference_max_rate", "highest tested rate with p99 <= 10 ms and no errors",
                     best(table["onnx"]), "req/s", True, "same path with native predict_proba", best(table["native"]),
                     {"rates": rates, "seconds_per_rate": seconds}),
    ]
