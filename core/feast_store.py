"""Open and apply the Feast feature store from StackSettings (no YAML templating needed).

``feature_repo/feature_store.yaml`` holds the same values for the ``feast`` CLI with default
ports; a unit test keeps the two in step.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any

from core.settings import StackSettings

#: the default project (StackSettings.feast_project; feature_store.yaml names it too)
PROJECT = "streamfeat"


def registry_path(settings: StackSettings) -> Path:
    return settings.data_dir / "feast" / "registry.db"


def repo_config(settings: StackSettings, repo_path: Path | None = None):  # -> RepoConfig
    from feast.repo_config import RepoConfig

    if settings.redis_cluster:  # every node, so the client finds the cluster from any live one
        where = ",".join(f"{h}:{p}" for h, p in settings.redis_startup_nodes)
    else:
        where = f"{settings.redis_host or settings.host}:{settings.redis_port},db={settings.redis_db}"
    registry = registry_path(settings)
    registry.parent.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=settings.feast_project,
        provider="local",
        registry={"path": str(registry), "cache_ttl_seconds": 60},
        online_store={
            "type": "redis",
            "redis_type": "redis_cluster" if settings.redis_cluster else "redis",
            "connection_string": f"{where}"
                                 f",socket_timeout={settings.redis_timeout_s}"
                                 f",socket_connect_timeout={settings.redis_timeout_s}"
                                 + (f",password={settings.redis_secret}" if settings.redis_secret else ""),
            # Each card has one writer (its partition's owner) and writes carry the state as a
            # whole, so Feast's read-before-write timestamp check (second resolution: it drops
            # a second update within the same second) is both wrong here and slow.
            "skip_dedup": True,
            # quiet entities expire (core/settings.py: redis_key_ttl_s); None: never
            "key_ttl_seconds": settings.redis_key_ttl_s or None,
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=repo_path or settings.feature_repo,
    )


def open_store(settings: StackSettings, repo_path: Path | None = None):  # -> FeatureStore
    from feast import FeatureStore

    repo = repo_path or settings.feature_repo
    return FeatureStore(repo_path=str(repo), config=repo_config(settings, repo))


def offline_dir(settings: StackSettings, dataset: str) -> Path:
    """Where the stream appends an offline dataset (the repo's FileSource paths point here)."""
    return settings.feature_repo / "data" / "offline" / dataset


def offline_root(settings: StackSettings) -> Any:
    """Where the offline log is read and written: ``STACK_OFFLINE_URL`` (an object store,
    core.storage) when set, else the local folder of ``offline_dir``. Feast's own offline
    reads (``get_historical_features``) and drift's data use the local folder."""
    from core import storage

    if settings.offline_url:
        return storage.root(settings.offline_url, settings.s3_endpoint or None)
    return storage.root(offline_dir(settings, ""))


def apply(settings: StackSettings, repo_path: Path | None = None) -> str:
    """`feast apply` for the repo: register objects, delete removed ones, create infra.

    Returns Feast's own diff text (what changed), which it would otherwise print.
    """
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    repo = repo_path or settings.feature_repo
    store = open_store(settings, repo)
    # Feast imports the repo's modules by their file names, as its CLI does from the repo dir.
    sys.path.insert(0, str(repo))
    out = io.StringIO()
    try:
        with contextlib.chdir(repo), contextlib.redirect_stdout(out):
            contents = parse_repo(Path(repo))
            apply_total_with_repo_instance(store, settings.feast_project, store.registry, contents,
                                           skip_source_validation=True)
    finally:
        sys.path.remove(str(repo))
    return out.getvalue()


def isolated_copy(settings: StackSettings, root: Path, **update: object) -> StackSettings:
    """A fresh copy of feature_repo/ under ``root`` (its own offline log and registry under
    ``root/data``, its own Feast project, so its own online keys), applied; the settings that
    open it. Tests and benchmarks use it."""
    import shutil
    import uuid

    from core.settings import REPO_ROOT

    repo = root / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    copy = settings.model_copy(update={"feature_repo": repo, "data_dir": root / "data",
                                       "feast_project": f"iso_{uuid.uuid4().hex[:12]}", **update})
    apply(copy)
    return copy
