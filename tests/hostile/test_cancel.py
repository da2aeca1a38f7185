"""Progress reporting and cancellation: an interrupted prune or save leaves nothing half-written."""

import pytest
import torch

import prunec
import prunec.persistence
from prunec.progress import ProgressEvent
from tests.hostile.common import small, snapshot, tree_bytes, tree_names

STAGES = ["trace", "couple", "group", "score", "select-uniform", "rewrite-module", "verify"]


def test_progress_callback_sees_every_stage():
    """A callback gets one event per stage, in order, then 'done'."""
    model, x = small()
    events = []
    prunec.prune(model, x, ratio=0.5, progress=events.append)
    assert events == [ProgressEvent(s, i, len(STAGES)) for i, s in enumerate(STAGES)] + [
        ProgressEvent("done", len(STAGES), len(STAGES))]


def test_progress_bar_runs(capsys):
    """progress=True draws a tqdm bar (on stderr) and prunes as usual."""
    model, x = small()
    result = prunec.prune(model, x, ratio=0.5, progress=True)
    assert result.report.channels_removed == 8
    assert "prunec" in capsys.readouterr().err


def test_progress_of_the_wrong_type():
    """progress= must be a bool, None or a callable."""
    model, x = small()
    with pytest.raises(prunec.InputError, match="progress= takes True, False, None or a callable, got str"):
        prunec.prune(model, x, ratio=0.5, progress="yes")


def _interrupt_at(stage):
    def callback(event):
        if event.stage == stage:
            raise KeyboardInterrupt
    return callback


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("stage", STAGES + ["done"])
def test_keyboard_interrupt_leaves_the_model_untouched(stage, inplace):
    """Ctrl-C at any stage (in place or not): the model's weights, sizes and outputs are as before."""
    model, x = small()
    before = snapshot(model)
    with torch.no_grad():
        out = model(x)
    with pytest.raises(KeyboardInterrupt):
        prunec.prune(model, x, ratio=0.5, inplace=inplace, progress=_interrupt_at(stage))
    assert snapshot(model) == before
    with torch.no_grad():
        assert torch.equal(model(x), out)


def test_failed_in_place_prune_is_rolled_back():
    """A VerificationError with inplace=True (tolerance impossible to meet) restores the model."""
    model, x = small()
    before = snapshot(model)
    with pytest.raises(prunec.VerificationError, match="does not match its reference"):
        prunec.prune(model, x, ratio=0.5, inplace=True, output="module", tolerance=-1.0)
    assert snapshot(model) == before


def test_interrupted_save_leaves_no_partial_files(tmp_path, monkeypatch):
    """Ctrl-C while the weights are written: no new file or directory; an earlier save is intact."""
    model, x = small()
    result = prunec.prune(model, x, ratio=0.5)
    prunec.save(result, tmp_path / "kept")
    before = tree_bytes(tmp_path)

    def half_written(tensors, file):
        file.write_bytes(b"\x00" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(prunec.persistence, "_write_weights", half_written)
    for target in ("new", "kept"):
        with pytest.raises(KeyboardInterrupt):
            prunec.save(result, tmp_path / target)
        assert tree_bytes(tmp_path) == before
        assert tree_names(tmp_path) == ["kept", "kept/plan.json", "kept/weights.safetensors"]
