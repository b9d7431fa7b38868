class TrainingError(Exception):
    """A failure the user can act on; the CLI prints its message as one line and exits 1."""


class DataError(TrainingError):
    """The training data is missing or unfit (nulls, out-of-range values, too few positives...)."""


class GateRefused(TrainingError):
    """The evaluation gate refused the model (not raised with --force)."""
