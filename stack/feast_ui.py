"""``python -m stack.feast_ui``: the Feast UI (it ships inside the feast wheel) over this
stack's registry: feature views, entities, feature services, data sources and lineage, at
``http://STACK_HOST:STACK_FEAST_UI_PORT/p/<project>/feature-view``. ``make up`` runs it; it is
the registry's browser, read only (its "create" buttons write nothing here: the repo is applied
from ``feature_repo/`` by ``make up``)."""

from __future__ import annotations

import logging
import sys
import warnings


def main() -> int:
    from pydantic import ValidationError

    from core import feast_store
    from core.settings import StackSettings, settings_error

    try:
        settings = StackSettings()
    except ValidationError as exc:
        print(f"error: {settings_error(exc)}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message="The Feast UI is an experimental feature")
    store = feast_store.open_store(settings)
    logging.getLogger("stack.feast_ui").info("Feast UI on http://%s:%d/p/%s/feature-view", settings.host,
                                             settings.feast_ui_port, settings.feast_project)
    store.serve_ui(host=settings.host, port=settings.feast_ui_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
