"""Parsing where batch work runs (``--cluster``, ``STACK_CLUSTER``)."""

from __future__ import annotations

import pytest

from core.cluster import Cluster, parse
from core.settings import StackSettings


@pytest.mark.parametrize(("spec", "want"), [
    (None, Cluster("in-process")),
    ("in-process", Cluster("in-process")),
    (" none ", Cluster("in-process")),
    ("local:2", Cluster("local", 2)),
    ("local:4:3GiB", Cluster("local", 4, "3GiB")),
    ("local:1:512MB", Cluster("local", 1, "512MB")),
    ("tcp://10.0.0.5:8786", Cluster("remote", address="tcp://10.0.0.5:8786")),
    ("tls://scheduler.internal:8786", Cluster("remote", address="tls://scheduler.internal:8786")),
])
def test_the_three_places_parse(spec: str | None, want: Cluster) -> None:
    assert parse(spec) == want
    assert parse(str(want)) == want  # (the setting stores its canonical form)


@pytest.mark.parametrize("spec", ["local", "local:0", "local:x", "local:2:lots", "tcp://host", "http://h:8786",
                                  "dask", "local:999"])
def test_anything_else_is_an_error_that_names_the_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="local:N|1 to 256"):
        parse(spec)


def test_the_setting_is_checked_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_CLUSTER", "local:3")
    assert StackSettings().cluster == "local:3"
    monkeypatch.setenv("STACK_CLUSTER", "everywhere")
    with pytest.raises(ValueError, match="is not one of"):
        StackSettings()


def test_a_scheduler_that_does_not_answer_is_a_clear_error() -> None:
    from core.cluster import connect
    from stack import health

    address = f"tcp://127.0.0.1:{health.free_port()}"  # (nothing listens there)
    with pytest.raises(ValueError, match=f"no Dask scheduler answers at {address}"), connect(address, timeout_s=1):
        pass
