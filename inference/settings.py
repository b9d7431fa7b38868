"""Inference service settings (env prefix ``INFERENCE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="ignore")

    model_name: str = "fraud-detector"
    model_alias: str = "champion"
    #: the purchase-propensity model served at /v1/propensity (same alias, same checks)
    propensity_model_name: str = "purchase-propensity"
    #: seconds between checks of the alias in the registry (0: only on admin reload)
    poll_interval_s: float = Field(15.0, ge=0)
    #: a bearer key with every scope (inference/auth.py); required when production is true
    admin_token: SecretStr | None = None
    #: scoped API keys, JSON: [{"name", "key", "scopes": [...], "rate_per_s"}]
    api_keys: SecretStr | None = None
    #: the same in a file (default <STACK_DATA_DIR>/secrets/api-keys.json, written by make up)
    api_keys_file: Path | None = None
    production: bool = False
    #: decision bands: approve below the model's threshold, decline at or above this
    decline_at: float = Field(0.9, gt=0, le=1)
    max_batch: int = Field(100, ge=1, le=10_000)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    #: a card whose newest event is older than this is flagged stale (its windows are empty)
    stale_after_s: float = Field(24 * 3600.0, gt=0)
    shadow: bool = True  # also score the challenger (recorded, never returned as the decision)
    publish_scores: bool = True
    scores_topic: str = "scores"
    propensity_topic: str = "propensity-scores"
    scores_queue: int = Field(100_000, ge=100)
    onnx_threads: int = Field(1, ge=1)
    #: uvicorn worker processes (each loads the model and keeps its own connections)
    workers: int = Field(1, ge=1, le=64)
    #: requests in flight per worker beyond which uvicorn answers 503 at once: past its
    #: capacity a worker sheds load instead of queueing everyone into timeouts
    max_concurrency: int = Field(64, ge=1)
    #: a scoring request not answered within this gets 503 (a hung Redis, an overloaded
    #: worker); the work runs on a bounded thread pool, never on the event loop, so /health
    #: and other requests keep answering meanwhile
    request_timeout_s: float = Field(1.0, gt=0, le=60)
    io_threads: int = Field(8, ge=1, le=256)
    #: POST /v1/score answered by inference/fastpath.py (same checks, without FastAPI's
    #: per-request machinery); false: by the FastAPI route, as before (the benchmark's baseline)
    fast_path: bool = True
    #: POST /v1/score requests that arrive while earlier ones are being scored are scored
    #: together (one Feast read, one ONNX run: inference/coalesce.py), at most this many per
    #: batch, on at most ``score_lanes`` batches at a time; 1 turns it off (each on its own)
    coalesce_max: int = Field(64, ge=1, le=1000)
    score_lanes: int = Field(2, ge=1, le=256)
    reasons: int = Field(3, ge=0, le=10)
    #: a request whose event_time differs from the server's time by more than this is flagged
    #: (response, inference_event_time_skew_total); it never chooses the read time
    max_event_time_skew_s: float = Field(300.0, ge=0)
    #: share of would-be declines approved for exploration (their label probability is logged
    #: with the score: training weighs their chargebacks by its inverse); 0: none
    explore_share: float = Field(0.0, ge=0, le=0.5)

    @model_validator(mode="after")
    def _token_in_production(self) -> InferenceSettings:
        if self.production and (self.admin_token is None or len(self.admin_token.get_secret_value()) < 16):
            raise ValueError("INFERENCE_ADMIN_TOKEN (at least 16 characters) is required when INFERENCE_PRODUCTION "
                             "is true")
        return self
