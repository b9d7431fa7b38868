"""python drift_check.py --max-samples N --significance-level A: drift of recent features and
scores against the champion's training reference (``--help`` for every option).
Exit 0: none or low; 3: medium or high; 1: error."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core.cli_exit import exit_now  # noqa: E402
from drift.cli import run  # noqa: E402

if __name__ == "__main__":
    exit_now(run(sys.argv[1:]))
