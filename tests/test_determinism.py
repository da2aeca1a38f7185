"""Same model, inputs and settings -> same groups, same pins, same pruned weights, run to run."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from prunec.zoo import ZOO

import prunec
from tests.determinism_probe import digest
from tests.fuzz.build import build
from tests.fuzz.grammar import RandomChoices, generate

MODELS = ["resnet_basic", "char_gpt"]


def test_repeated_prunes_in_one_process_agree():
    """Pruning the same model twice gives identical digests (groups, pins, weights)."""
    assert digest("shufflenet_v2") == digest("shufflenet_v2")


def test_runs_with_different_hash_seeds_agree():
    """Two fresh interpreters with different PYTHONHASHSEED (set/dict order) print the same digests."""
    root = Path(__file__).resolve().parents[1]
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        proc = subprocess.run([sys.executable, "-m", "tests.determinism_probe", *MODELS], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300, check=True)
        outs.append(proc.stdout.split())
    assert len(outs[0]) == 2 * len(MODELS)
    assert outs[0] == outs[1]


def test_random_architectures_analyse_identically_twice():
    """Six fuzz architectures: two analyses print the same groups and pins."""
    for i in range(6):
        spec = generate(RandomChoices(4242 + i))
        model, x = build(spec)
        texts = {str(prunec.analyze(model, x)) for _ in range(2)}
        assert len(texts) == 1, spec


def test_pruned_weights_are_identical_run_to_run():
    """Bit-identical pruned state for the same zoo model pruned twice at a MACs target."""
    entry = ZOO["mobilenet_v2"]
    a, b = (prunec.prune(entry.build(), entry.example_inputs(), target="macs=0.6", verify=False)
            .model.state_dict() for _ in range(2))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
