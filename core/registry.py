"""Trust in the model registry: only what the pipeline approved is served.

- **Signed versions.** When training (or a warm start) registers a version, it signs a
  manifest of it with an Ed25519 key: name, version, the ONNX file's sha256, the feature
  list, the threshold, the gate's verdict and the model type. The manifest and signature are
  version tags; without the private key nobody can make a valid pair, so a tag edited in
  MLflow, a file swapped in the artifact store or a version logged by hand is refused.
- **Signed promotions, compare-and-set.** Moving ``champion`` writes a signed promotion
  record (version, previous version, sequence number, reason) as a registered-model tag,
  under a Redis lock and only if the champion is still the one the promoter expected. The
  API serves the alias only when the newest signed promotion names its version: an alias
  moved by anyone without the key is refused, and two promoters cannot interleave.
- **Checks at load** (``refusal``): signature, name and version, sha256 of the bytes, gate
  passed (or forced past it by a key holder, which the manifest records), the serving
  contract's features in order, a threshold in (0, 1) agreeing with the graph's metadata.

Keys: ``STACK_MODEL_SIGNING_KEY_FILE`` (private, only where training runs) and
``STACK_MODEL_VERIFY_KEY_FILE`` (public, for the API and stream scorer); by default
``.data/secrets/model-signing.{key,pub}``, created on first use by training or ``make up``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.settings import StackSettings

MANIFEST_TAG, SIGNATURE_TAG = "manifest", "manifest_signature"
PROMOTION_TAG, PROMOTION_SIG_TAG = "champion_promotion", "champion_promotion_signature"
ACCEPTED_GATES = ("passed", "failed (forced)")
ANY = object()  # promote(): no expectation about the current champion


class RegistryError(RuntimeError):
    """A signing, verification or promotion problem; the message says which."""


class PromotionConflict(RegistryError):
    """The champion is not the version the promoter expected (someone else promoted first)."""


def key_paths(settings: StackSettings) -> tuple[Path, Path]:
    secrets = settings.data_dir / "secrets"
    return (settings.model_signing_key_file or secrets / "model-signing.key",
            settings.model_verify_key_file or secrets / "model-signing.pub")


def ensure_keys(settings: StackSettings) -> tuple[Path, Path]:
    """Create the key pair when neither half exists (private key mode 0600); derive a
    missing public key from an existing private one. A public key alone is left alone: the
    private half lives elsewhere (a machine that only verifies)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = key_paths(settings)
    if not private.exists() and public.exists():
        return private, public
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(private, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    if not public.exists():
        public.parent.mkdir(parents=True, exist_ok=True)
        public.write_bytes(_private(private).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def _private(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read the model signing key {path}: {exc}") from None


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


class Signer:
    def __init__(self, settings: StackSettings) -> None:
        private, public = ensure_keys(settings)
        if not private.exists():
            raise RegistryError(f"no model signing key at {private} (only the verify key {public} is here): set "
                                "STACK_MODEL_SIGNING_KEY_FILE where training runs")
        self._key = _private(private)

    def sign(self, payload: dict[str, Any]) -> str:
        return base64.b64encode(self._key.sign(canonical(payload))).decode()


class Verifier:
    """Checks signatures with the public key (read on first use, so that an API started
    before the first training run finds the key once it exists)."""

    def __init__(self, public_key: Path) -> None:
        self.path = public_key
        self._key: Any = None

    @classmethod
    def of(cls, settings: StackSettings) -> Verifier:
        return cls(key_paths(settings)[1])

    def key(self) -> Any:
        """The public key; RegistryError when it cannot be read."""
        from cryptography.hazmat.primitives import serialization

        if self._key is None:
            try:
                self._key = serialization.load_pem_public_key(self.path.read_bytes())
            except (OSError, ValueError) as exc:
                raise RegistryError(f"no model verify key ({self.path}: {exc}); set STACK_MODEL_VERIFY_KEY_FILE"
                                    ) from None
        return self._key

    def verify(self, payload_json: str | None, signature: str | None) -> dict[str, Any]:
        """The signed payload, or RegistryError saying why not."""
        from cryptography.exceptions import InvalidSignature

        if not payload_json or not signature:
            raise RegistryError("unsigned")
        self.key()
        try:
            payload = json.loads(payload_json)
            self._key.verify(base64.b64decode(signature), canonical(payload))
        except (InvalidSignature, ValueError, TypeError):
            raise RegistryError("bad signature (tampered, or signed with another key)") from None
        if not isinstance(payload, dict):
            raise RegistryError("bad signature (not a manifest)")
        return payload


# -- versions ----------------------------------------------------------------------------------
def manifest(name: str, version: str, raw: bytes, metadata: dict[str, Any], gate: str) -> dict[str, Any]:
    return {"name": name, "version": str(version), "onnx_sha256": hashlib.sha256(raw).hexdigest(),
            "features": list(metadata.get("features", [])), "threshold": metadata.get("threshold"),
            "model_type": metadata.get("model_type"), "gate": gate, "signed_at": int(time.time())}


def sign_version(settings: StackSettings, name: str, version: str, raw: bytes, metadata: dict[str, Any],
                 gate: str) -> dict[str, Any]:
    """Sign a registered version's manifest and store it in the version's tags."""
    from mlflow import MlflowClient

    doc = manifest(name, version, raw, metadata, gate)
    sig = Signer(settings).sign(doc)
    client = MlflowClient()
    client.set_model_version_tag(name, str(version), MANIFEST_TAG, json.dumps(doc, sort_keys=True))
    client.set_model_version_tag(name, str(version), SIGNATURE_TAG, sig)
    return doc


def refusal(name: str, version: str, raw: bytes, metadata: dict[str, Any], tags: dict[str, str],
            verifier: Verifier, expected_features: list[str] | tuple[str, ...]) -> tuple[str, str] | None:
    """(reason code, detail) why this version must not be served, or None when it may.
    RegistryError when the verify key is missing (nothing is judged without it)."""
    verifier.key()
    try:
        doc = verifier.verify(tags.get(MANIFEST_TAG), tags.get(SIGNATURE_TAG))
    except RegistryError as exc:
        return ("unsigned" if str(exc) == "unsigned" else "bad_signature"), str(exc)
    if doc.get("name") != name or doc.get("version") != str(version):
        return "bad_signature", f"the signed manifest is {doc.get('name')} v{doc.get('version')}, not {name} v{version}"
    if hashlib.sha256(raw).hexdigest() != doc.get("onnx_sha256"):
        return "tampered", "the ONNX file's sha256 is not the signed one"
    if doc.get("gate") not in ACCEPTED_GATES:
        return "ungated", f"gate verdict {doc.get('gate')!r} (must be {' or '.join(ACCEPTED_GATES)})"
    features = list(metadata.get("features", []))
    if doc.get("features") != features or features != list(expected_features):
        return "features", (f"features {features[:3]}... ({len(features)}) are not the serving contract's "
                            f"({len(expected_features)})")
    thr = doc.get("threshold")
    if not isinstance(thr, int | float) or not 0.0 < float(thr) < 1.0 or thr != metadata.get("threshold"):
        return "threshold", f"threshold {thr!r} outside (0, 1) or not the graph's {metadata.get('threshold')!r}"
    return None


# -- promotions --------------------------------------------------------------------------------
def signed_champion(name: str, verifier: Verifier) -> dict[str, Any] | None:
    """The newest signed promotion record of ``name`` (None: none, or its signature fails;
    RegistryError when there is no verify key to check it with)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    verifier.key()
    try:
        tags = MlflowClient().get_registered_model(name).tags
    except MlflowException:
        return None
    try:
        return verifier.verify(tags.get(PROMOTION_TAG), tags.get(PROMOTION_SIG_TAG))
    except RegistryError:
        return None


@contextlib.contextmanager
def _promotion_lock(settings: StackSettings, name: str, wait_s: float = 30.0) -> Iterator[None]:
    """A Redis lock per model (SET NX with expiry; released only by its owner; in a Redis
    Cluster on the key's master)."""
    import redis
    from redis.exceptions import RedisClusterException

    try:
        r = settings.redis_client(timeout_s=5)
    except (redis.RedisError, RedisClusterException) as exc:  # (a cluster client reads the topology at once)
        raise RegistryError(f"promotion needs Redis for its lock ({settings.redis_url_shown}): {exc}") from None
    key, token = f"streamfeat:promote:{name}", uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    try:
        while not r.set(key, token, nx=True, px=60_000):
            if time.monotonic() > deadline:
                raise RegistryError(f"another promotion of {name} holds the lock ({key}) for over {wait_s:.0f} s")
            time.sleep(0.05)
    except (redis.RedisError, RedisClusterException) as exc:
        raise RegistryError(f"promotion needs Redis for its lock ({settings.redis_url_shown}): {exc}") from None
    try:
        yield
    finally:
        r.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
               1, key, token)


def promote(settings: StackSettings, name: str, version: str, reason: str, expected: Any = ANY,
            evidence: dict[str, Any] | None = None) -> str | None:
    """Make ``version`` the champion if the champion is still ``expected`` (a version, None
    for "no champion", or ANY); sign the promotion. Returns the previous champion's version;
    raises PromotionConflict when the expectation does not hold."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    signer = Signer(settings)
    with _promotion_lock(settings, name):
        try:
            previous: str | None = str(client.get_model_version_by_alias(name, "champion").version)
        except MlflowException:
            previous = None
        if expected is not ANY and (None if expected is None else str(expected)) != previous:
            raise PromotionConflict(f"{name}: expected champion {('v' + str(expected)) if expected else 'none'}, "
                                    f"found {('v' + previous) if previous else 'none'}; not promoting v{version}")
        last = signed_champion(name, Verifier.of(settings)) or {}
        record = {"name": name, "version": str(version), "previous": previous, "seq": int(last.get("seq", 0)) + 1,
                  "reason": reason, "at": int(time.time()), "evidence": evidence or {}}
        client.set_registered_model_tag(name, PROMOTION_TAG, json.dumps(record, sort_keys=True))
        client.set_registered_model_tag(name, PROMOTION_SIG_TAG, signer.sign(record))
        client.set_registered_model_alias(name, "champion", str(version))
        client.set_model_version_tag(name, str(version), "promoted_reason", reason)
        if previous and previous != str(version):
            client.set_model_version_tag(name, previous, "replaced_by", str(version))
    return previous
