"""Benchmarks of the serving stack (not tests): each prints ratios measured side by side in one run
and writes JSON + markdown next to the committed results under ``benchmarks/``."""
