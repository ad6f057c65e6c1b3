"""Hypothesis settings for the property tests, and how scripts/mutate scales them down.

scripts/mutate runs the property tests once per mutant: it sets ``SSEHUB_MUTATION_EXAMPLES``,
and each property test then draws at most that many examples, the same ones every time
(derandomized), so a mutant's verdict does not depend on luck.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["MUTATION_EXAMPLES", "property_settings"]

_mutation_examples = os.environ.get("SSEHUB_MUTATION_EXAMPLES")
MUTATION_EXAMPLES = int(_mutation_examples) if _mutation_examples else None
"""The examples per property test under scripts/mutate (None in a normal run)."""


def property_settings(examples: int) -> settings:
    """``examples`` examples, no deadline; under scripts/mutate at most `MUTATION_EXAMPLES`."""
    if MUTATION_EXAMPLES is not None:
        return settings(
            max_examples=min(examples, MUTATION_EXAMPLES),
            derandomize=True,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
