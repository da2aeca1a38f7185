"""Fast fuzz profile: random architectures pruned at random settings never give a wrong model.

50 derandomized hypothesis examples (the same every run; PRUNEC_FUZZ_EXAMPLES overrides the count).
A failure is shrunk by hypothesis to a small spec, printed as JSON for tests/fuzz/test_regressions.py.
The long run is `python bench/fuzz.py --cases 2000`.
"""

import os
from collections.abc import Sequence
from typing import TypeVar

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests.fuzz.check import FAILURE, run_case, spec_text
from tests.fuzz.grammar import generate

T = TypeVar("T")
EXAMPLES = int(os.environ.get("PRUNEC_FUZZ_EXAMPLES", "50"))


class HypothesisChoices:
    """Choices drawn from hypothesis (so failures shrink towards simpler specs)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(list(options)))

    def coin(self, p: float = 0.5) -> bool:
        return self.data.draw(st.integers(0, 99)) >= 100 - round(p * 100)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_random_architectures_prune_correctly(data):
    """Contract holds and the model shrinks, or channels are pinned with a reason; no error, no mismatch."""
    spec = generate(HypothesisChoices(data), max_blocks=4)
    note(f"spec: {spec_text(spec)}")
    outcome = run_case(spec)
    event(outcome.status)
    event(f"blocks={len(spec['blocks'])}")
    assert outcome.status != FAILURE, f"{outcome}\nspec: {spec_text(spec)}"
