"""Event contracts: one definition, validated when produced and when consumed.

Events travel as JSON (msgspec: decoding *is* validation, at a few microseconds an event).
Ground truth never travels with a transaction: it goes to ``fraud-feedback`` later.

Schema evolution. Records of ``SCHEMA_VERSION`` are decoded strictly (an unknown field is
an error). A record of a *newer* version, from a producer upgraded before the pipeline, is
decoded by the same rules except that fields this code does not know are ignored: newer
versions may only add fields (a change of meaning needs a new topic). ``decode_versioned``
says which version came, so consumers count them (``stream_events_newer_schema_total``) and an
operator knows to upgrade. Bump ``SCHEMA_VERSION`` when a field is added, keep decoding the
old versions, and keep their golden records in ``tests/fixtures/golden``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

SCHEMA_VERSION = 1
T = TypeVar("T", bound=msgspec.Struct)

TRANSACTIONS = "transactions"
CLICKS = "clicks"
FRAUD_FEEDBACK = "fraud-feedback"
DEAD_LETTERS = "dead-letters"
SCORES = "scores"

CURRENCIES = frozenset({"EUR", "USD", "GBP", "CHF", "SEK", "PLN", "JPY", "CAD", "AUD", "BRL"})
#: Merchant category codes treated as high risk (gambling, money orders, crypto/quasi-cash,
#: wire transfers, jewellery, electronics resale). Documented in README.
#: a transaction's categories published with its score (``ScoreRecord.request``) and kept in the
#: drift reference: drift's data quality finds categories the reference never had (a new MCC)
REQUEST_FIELDS = ("mcc", "country", "channel")
HIGH_RISK_MCCS = frozenset({"7995", "4829", "6051", "6211", "5944", "5732", "7801", "7802"})

EventId = Annotated[str, msgspec.Meta(min_length=8, max_length=64)]
EpochMs = Annotated[int, msgspec.Meta(ge=946_684_800_000, le=4_102_444_800_000)]  # 2000..2100
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Amount = Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]
Country = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")]
Channel = Literal["pos", "online", "atm"]
Action = Literal["view", "add_to_cart", "purchase"]
Device = Literal["mobile", "desktop", "tablet"]


class Transaction(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    event_id: EventId
    event_time: EpochMs
    card_id: Id
    user_id: Id
    merchant_id: Id
    mcc: Annotated[str, msgspec.Meta(pattern="^[0-9]{4}$")]
    amount: Amount
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
    country: Country
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    device_id: Id
    ip: Annotated[str, msgspec.Meta(min_length=7, max_length=45)]
    channel: Channel
    schema_version: Literal[1] = 1


class Click(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    event_id: EventId
    event_time: EpochMs
    user_id: Id
    session_id: Id
    page: Id
    action: Action
    dwell_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)]
    device: Device
    country: Country
    schema_version: Literal[1] = 1


class FraudFeedback(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Delayed ground truth for one transaction (like a chargeback), never on the event."""

    event_id: EventId
    card_id: Id
    event_time: EpochMs
    is_fraud: bool
    scenario: str
    schema_version: Literal[1] = 1


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    source_topic: str
    partition: int
    offset: int
    payload: str  # the raw record, utf-8 with replacement characters
    failed_at: int  # epoch ms


Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]


class ShadowScore(msgspec.Struct, frozen=True, kw_only=True):
    model_version: str
    fraud_probability: Probability


class ScoreRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record of the ``scores`` topic (inference/scoring.py writes it). Our own record, so
    fields may be added: unknown ones are ignored, the ones consumers use are checked. A
    feature the model could not compute travels as null."""

    event_id: EventId
    card_id: Id
    event_time: EpochMs
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    fraud_probability: Probability
    decision: Literal["approve", "review", "decline"]
    model_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    features: dict[str, float | None]
    scored_at: EpochMs | None = None
    explored: bool = False
    label_probability: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    shadow: ShadowScore | None = None
    #: the transaction's categories (``REQUEST_FIELDS``), for drift's data quality
    request: dict[Annotated[str, msgspec.Meta(max_length=32)], Annotated[str, msgspec.Meta(max_length=64)]] | None = (
        None)


class PropensityShadow(msgspec.Struct, frozen=True, kw_only=True):
    model_version: str
    purchase_probability: Probability


class PropensityRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record of the ``propensity-scores`` topic (inference/propensity.py writes it): the
    click it scored (``event_id`` null for a live click sent without one), as for ScoreRecord."""

    event_id: EventId | None = None
    user_id: Id
    session_id: Id
    event_time: EpochMs
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    purchase_probability: Probability
    model_version: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    features: dict[str, float | None]
    scored_at: EpochMs | None = None
    shadow: PropensityShadow | None = None


class InvalidEvent(ValueError):
    """A record that does not satisfy its contract; the message is the reason."""


def _newer(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """``cls`` as a newer producer's record: unknown fields ignored, any version >= 1."""
    fields = []
    for f in msgspec.structs.fields(cls):
        ftype = Annotated[int, msgspec.Meta(ge=1, le=1_000)] if f.name == "schema_version" else f.type
        fields.append((f.name, ftype) if f.required else (f.name, ftype, f.default))
    return msgspec.defstruct(f"{cls.__name__}Newer", fields, kw_only=True, frozen=True,
                             forbid_unknown_fields=False)


_ENCODER = msgspec.json.Encoder()
_DECODERS = {cls: msgspec.json.Decoder(cls) for cls in (Transaction, Click, FraudFeedback, DeadLetter,
                                                         ScoreRecord, PropensityRecord)}


def encode(event: msgspec.Struct, validate: bool = True) -> bytes:
    """JSON of an event. Constructing a Struct does not check its constraints, so the
    encoded bytes are decoded once more (a few microseconds) to validate on produce too;
    an invalid event raises InvalidEvent instead of reaching the topic."""
    raw = _ENCODER.encode(event)
    if validate and type(event) in _DECODERS:
        decode(raw, type(event))
    return raw


_NEWER: dict[type, msgspec.json.Decoder] = {cls: msgspec.json.Decoder(_newer(cls))
                                            for cls in (Transaction, Click, FraudFeedback)}


def decode_versioned(raw: bytes, cls: type[T]) -> tuple[T, int]:
    """Decode and validate (see the module's note on versions); the event and the schema
    version it came with. InvalidEvent with a readable reason when it breaks the contract."""
    try:
        return decode(raw, cls), SCHEMA_VERSION
    except InvalidEvent as strict:
        newer = _NEWER.get(cls)
        if newer is None:
            raise
        try:
            rec: Any = newer.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise strict from None
        if rec.schema_version <= SCHEMA_VERSION:
            raise  # a current record with unknown fields: an error, as the strict decoder said
        known = {f: getattr(rec, f) for f in cls.__struct_fields__ if f != "schema_version"}
        event = cls(**known)
        return decode(encode(event, validate=False), cls), rec.schema_version  # the same checks as v1


def decode(raw: bytes, cls: type[T]) -> T:
    """Decode and validate strictly (this version only); raise InvalidEvent with a readable
    reason."""
    try:
        event: T = _DECODERS[cls].decode(raw)  # type: ignore[index, assignment]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidEvent(str(exc)) from None
    if isinstance(event, Transaction) and event.currency not in CURRENCIES:
        raise InvalidEvent(f"unknown currency {event.currency!r} - at `$.currency`")
    return event


def decode_score(raw: bytes) -> dict:
    """A ``scores`` record as a plain dict, validated (InvalidEvent with the reason if not):
    the consumers of the topic (online learner, drift checks, training's decisions, the
    generator) skip and count a bad record instead of crashing on it."""
    return msgspec.to_builtins(decode(raw, ScoreRecord))


def decode_propensity(raw: bytes) -> dict:
    """A ``propensity-scores`` record as a plain dict, validated like ``decode_score``."""
    return msgspec.to_builtins(decode(raw, PropensityRecord))
