"""Fast fuzz profile on the ONNX path: random architectures exported with torch.onnx, pruned as files.

12 derandomized hypothesis examples that export (the others are discarded with assume());
PRUNEC_FUZZ_ONNX_EXAMPLES overrides the count. The long run is `python bench/fuzz.py --onnx`.
"""

import os

from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

from tests.fuzz.check import FAILURE, spec_text
from tests.fuzz.check_onnx import SKIPPED, run_onnx_case
from tests.fuzz.grammar import generate
from tests.fuzz.test_fuzz import HypothesisChoices

EXAMPLES = int(os.environ.get("PRUNEC_FUZZ_ONNX_EXAMPLES", "12"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(st.data())
def test_random_architectures_prune_correctly_as_onnx(data):
    """Exported models: the contract holds in onnxruntime and the file shrinks, or channels are pinned;
    no internal error, no mismatch, the input file unchanged.
    """
    spec = generate(HypothesisChoices(data), max_blocks=4)
    note(f"spec: {spec_text(spec)}")
    outcome = run_onnx_case(spec)
    assume(outcome.status != SKIPPED)
    event(outcome.status)
    assert outcome.status != FAILURE, f"{outcome}\nspec: {spec_text(spec)}"
