"""The char-GPT zoo model exported to ONNX (attention as torch exports it) prunes its MLP width."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from prunec.zoo import ZOO

from prunec import onnx_api
from prunec.onnx_verify import verify_pruned
from prunec.rewrite.to_onnx import rewrite_onnx
from tests.onnx.helpers import expected_params, params, relative_diff, run, zeroed


@pytest.fixture(scope="module")
def gpt_path(tmp_path_factory):
    """char_gpt exported with dynamic batch and sequence axes."""
    path = str(tmp_path_factory.mktemp("gpt") / "char_gpt.onnx")
    entry = ZOO["char_gpt"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(entry.build(), (entry.example_inputs(),), path, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b", 1: "t"}, "y": {0: "b", 1: "t"}},
                          opset_version=17)
    return path


def _fc_weights(model: onnx.ModelProto) -> list[tuple[int, ...]]:
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type == "MatMul" and "/fc/" in n.name]


def test_char_gpt_prunes_mlp_width_heads_and_stream(gpt_path):
    """ratio=0.5 halves the MLP hidden width of both blocks; verified against the removal reference."""
    result = onnx_api.prune(gpt_path, ratio=0.5, input_shapes={"x": (2, 32)})
    assert result.verification.passed and "channel-mixing" in result.verification.reference
    assert _fc_weights(result.model) == [(32, 128), (32, 128)]
    assert params(result.model) == expected_params(onnx.load(gpt_path), result.removed)
    ids = np.random.default_rng(0).integers(0, 96, size=(3, 20))
    assert run(result.model, {"x": ids})[0].shape == (3, 20, 96)  # batch and sequence stay dynamic


def test_char_gpt_mlp_only_keeps_the_literal_contract(gpt_path):
    """Removing only MLP channels (zero-invariant groups) equals zeroing them in the original."""
    analysis = onnx_api.analyze(gpt_path, input_shapes={"x": (2, 32)})
    mlp = [g for g in analysis.groups if g.channel_count == 256]
    assert len(mlp) == 2 and all(g.zero_invariant for g in mlp)
    scores = onnx_api.score_groups(analysis)
    masks = {g.id: tuple(int(c) for c in np.argsort(scores[g.id])[:100]) for g in mlp}
    keep = analysis.keep_mask(masks)
    model, _ = rewrite_onnx(analysis, keep)
    removed = [analysis.group(gid).select(ch) for gid, ch in masks.items()]
    assert verify_pruned(analysis, model, keep, removed).passed
    assert _fc_weights(model) == [(64, 156), (64, 156)]
    ids = np.random.default_rng(1).integers(0, 96, size=(2, 32))
    want = run(zeroed(onnx.load(gpt_path), removed), {"x": ids})
    assert relative_diff(run(model, {"x": ids}), want) <= 1e-4
