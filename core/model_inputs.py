"""Model inputs: the card's window features as of just before a transaction plus the
transaction's own request fields, in one fixed order. Training (offline log), the
inference service (online read) and the tests build rows with these functions, so the
model sees the same columns computed the same way on both paths (ARCHITECTURE.md, skew)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.contracts import HIGH_RISK_MCCS
from core.features import REQUEST_FEATURES, WINDOW_FEATURES
from core.user_features import USER_FEATURES

#: request fields taken from the transaction itself (not from the card's history)
TXN_FIELDS: tuple[str, ...] = ("amount", "mcc_high_risk", "channel_online", "channel_atm")
MODEL_FEATURES: tuple[str, ...] = WINDOW_FEATURES + REQUEST_FEATURES + TXN_FIELDS
FEATURE_SET_VERSION = "fraud_v1"


def txn_fields(amount: float, mcc: str, channel: str) -> dict[str, float]:
    return {"amount": float(amount), "mcc_high_risk": float(mcc in HIGH_RISK_MCCS),
            "channel_online": float(channel == "online"), "channel_atm": float(channel == "atm")}


def model_row(features: Mapping[str, Any], amount: float, mcc: str, channel: str) -> list[float]:
    """One row in MODEL_FEATURES order from pre-transaction features (with request features)."""
    merged = {**features, **txn_fields(amount, mcc, channel)}
    return [float(merged[name]) for name in MODEL_FEATURES]


# -- personalization (purchase propensity) ---------------------------------------------------
CLICK_FIELDS: tuple[str, ...] = ("is_view", "is_add_to_cart", "is_purchase", "dwell_ms", "device_mobile",
                                 "device_tablet")
PROPENSITY_FEATURES: tuple[str, ...] = USER_FEATURES + CLICK_FIELDS


def click_fields(action: str, dwell_ms: float, device: str) -> dict[str, float]:
    return {"is_view": float(action == "view"), "is_add_to_cart": float(action == "add_to_cart"),
            "is_purchase": float(action == "purchase"), "dwell_ms": float(dwell_ms),
            "device_mobile": float(device == "mobile"), "device_tablet": float(device == "tablet")}
