"""Drift stage: statistical drift checks and the continuous learning loop."""
