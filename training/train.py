"""python training/train.py --model-type xgboost: train, evaluate, gate, register, export ONNX.

The same as ``python -m training train``; ``--help`` lists every option."""

import sys
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
# Run as a script, Python puts training/ itself first on sys.path, where its module names
# (config, search, export...) would shadow other packages: use the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _root / "training"]
sys.path.insert(0, str(_root))

from core.cli_exit import exit_now  # noqa: E402
from training.cli import run  # noqa: E402

if __name__ == "__main__":
    exit_now(run(["train", *sys.argv[1:]]))
