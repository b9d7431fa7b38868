"""Synthetic event generators: a deterministic world of users, cards, merchants and devices,
with labelled fraud scenarios whose ground truth is published later on fraud-feedback."""
