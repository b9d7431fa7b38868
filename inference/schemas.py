"""Request and response models (strict: unknown fields, wrong types, NaN/inf and absurd
values answer 422 with the reason)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from core.contracts import CURRENCIES

Strict = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=False)
Id = Annotated[str, Field(min_length=1, max_length=64)]

EXAMPLE = {
    "event_id": "3f2b8c1e-9a4d-4e1b-8f7a-2c5d6e7f8a9b", "event_time": 1790000000000, "card_id": "card-000042",
    "user_id": "user-000042", "merchant_id": "m-0007", "mcc": "5411", "amount": 42.5, "currency": "EUR",
    "country": "DE", "lat": 52.52, "lon": 13.4, "device_id": "dev-01", "ip": "10.1.2.3", "channel": "pos",
}


class Transaction(BaseModel):
    """One card transaction, the event fields of ARCHITECTURE.md."""

    model_config = ConfigDict(**Strict, json_schema_extra={"examples": [EXAMPLE]})

    event_id: Annotated[str, Field(min_length=8, max_length=64)]
    event_time: Annotated[int | None, Field(ge=946_684_800_000, le=4_102_444_800_000,
                                            description="epoch ms (UTC), as the client claims it: recorded and "
                                                        "checked against the server's time; live scores are "
                                                        "read at the server's time")] = None
    card_id: Id
    user_id: Id
    merchant_id: Id
    mcc: Annotated[str, Field(pattern="^[0-9]{4}$")]
    amount: Annotated[float, Field(gt=0, le=1_000_000, description="in the transaction currency")]
    currency: str
    country: Annotated[str, Field(pattern="^[A-Z]{2}$")]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    device_id: Id
    ip: Annotated[str, Field(min_length=7, max_length=45)]
    channel: Literal["pos", "online", "atm"]
    schema_version: Literal[1] = 1

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, v: str) -> str:
        if v not in CURRENCIES:
            raise ValueError(f"unknown currency {v!r}; one of {', '.join(sorted(CURRENCIES))}")
        return v


class BatchRequest(BaseModel):
    model_config = ConfigDict(**Strict)
    transactions: Annotated[list[Transaction], Field(min_length=1, max_length=10_000)]


def batch_request(max_batch: int) -> type[BatchRequest]:
    """The batch schema capped at ``max_batch`` items: the cap is in the schema (and the
    OpenAPI document), and validation stops at the first item past it."""
    return create_model("BatchRequest", __base__=BatchRequest,  # type: ignore[call-overload, no-any-return]
                        transactions=(Annotated[list[Transaction], Field(min_length=1, max_length=max_batch)], ...))


CLICK_EXAMPLE: dict[str, Any] = {"event_id": "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", "user_id": "user-000042",
                 "session_id": "sess-7f3a", "page": "product-0815", "action": "add_to_cart", "dwell_ms": 5400,
                 "device": "mobile"}


class ClickContext(BaseModel):
    """The user's current click (or page view): the fields of a clicks event."""

    model_config = ConfigDict(**Strict, json_schema_extra={"examples": [CLICK_EXAMPLE]})

    event_id: Annotated[str | None, Field(min_length=8, max_length=64, description="the click's id, when it has "
                                          "one: a retry or re-score of a click the stream already holds leaves it "
                                          "out of its own view")] = None
    event_time: Annotated[int | None, Field(ge=946_684_800_000, le=4_102_444_800_000,
                                            description="epoch ms (UTC), as the client claims it: recorded and "
                                                        "checked; live scores are read at the server's time")] = None
    user_id: Id
    session_id: Id
    page: Id | None = None
    action: Literal["view", "add_to_cart", "purchase"]
    dwell_ms: Annotated[int, Field(ge=0, le=3_600_000)]
    device: Literal["mobile", "desktop", "tablet"]


class ClickBatch(BaseModel):
    model_config = ConfigDict(**Strict)
    clicks: Annotated[list[ClickContext], Field(min_length=1, max_length=10_000)]


def click_batch(max_batch: int) -> type[ClickBatch]:
    return create_model("ClickBatch", __base__=ClickBatch,  # type: ignore[call-overload, no-any-return]
                        clicks=(Annotated[list[ClickContext], Field(min_length=1, max_length=max_batch)], ...))


class Reason(BaseModel):
    kind: Literal["feature", "rule"]
    name: str
    text: str


class Score(BaseModel):
    event_id: str
    card_id: str
    fraud_probability: float
    decision: Literal["approve", "review", "decline"]
    risk_tier: Literal["low", "medium", "high"]
    model_version: str
    reasons: list[Reason]
    feature_age_ms: int | None = Field(description="now minus the card's newest event; null for a new card")
    features_missing: bool = Field(description="no history online: new card, or quiet past the feature TTL; "
                                               "windows count 0 and seconds_since_last_txn is 7 days")
    features_stale: bool = Field(description="newest event older than INFERENCE_STALE_AFTER_S")
    shadow: dict[str, float | str] | None = None
    scored_at: int = Field(description="the time the features were read at (epoch ms): the server's time, or "
                                       "the event time on the admin re-scoring path")
    event_time_skew_ms: int | None = Field(description="the request's event_time minus scored_at; null without one")
    event_time_flagged: bool = Field(description="|event_time_skew_ms| above INFERENCE_MAX_EVENT_TIME_SKEW_S")
    explored: bool = Field(False, description="a would-be decline approved for exploration (INFERENCE_EXPLORE_SHARE)")
    latency_ms: float


class PropensityScore(BaseModel):
    event_id: str | None
    user_id: str
    session_id: str
    purchase_probability: float
    tier: Literal["low", "medium", "high"]
    model_version: str
    reasons: list[Reason]
    feature_age_ms: int | None = Field(description="now minus the user's newest click; null for a new user")
    features_missing: bool = Field(description="no click history online (new user, or quiet past the TTL)")
    features_stale: bool = Field(description="newest click older than INFERENCE_STALE_AFTER_S")
    shadow: dict[str, float | str] | None = None
    scored_at: int = Field(description="the time the features were read at (epoch ms)")
    event_time_skew_ms: int | None
    event_time_flagged: bool
    latency_ms: float


class PropensityBatch(BaseModel):
    scores: list[PropensityScore]


class BatchResponse(BaseModel):
    scores: list[Score]


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str
    model_type: str
    threshold: float
    decline_at: float
    features: list[str]
    sha256: str
    metrics: dict[str, str]
    loaded_at: str
    challenger_version: str | None
    labels: str | None = Field(None, description="what the served model was trained on (rules, fraud feedback...)")
    promotion: dict[str, Any] | None = Field(None, description="the signed promotion that put it there: reason, "
                                                              "previous version, evidence (labels, ground-truth gate)")


class Problem(BaseModel):
    detail: str
