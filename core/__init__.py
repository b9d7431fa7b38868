"""Shared contracts and settings used by every stage of the pipeline."""
