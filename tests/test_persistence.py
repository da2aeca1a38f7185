"""prunec.save / prunec.load: plans (JSON) + weights (safetensors) reproduce pruned models bit-exactly."""

import json
import struct

import pytest
import torch
from prunec.zoo import ZOO
from prunec.zoo.resnet import BasicBlock, ResNet

import prunec
from prunec.persistence import PLAN_FILE, PLAN_VERSION, WEIGHTS_FILE, fingerprint, state_entries
from tests.helpers import state_hash
from tests.hostile.common import tree_bytes, tree_names


def _rerandomized(entry):
    """A fresh original whose weights differ from the pruned one's: load must replace them all."""
    model = entry.build()
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen))
    return model


def _call(model, example):
    with torch.no_grad():
        if isinstance(example, dict):
            return model(**example)
        return model(*example) if isinstance(example, tuple) else model(example)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_round_trip_is_bit_exact(name, tmp_path):
    """Every zoo model: save, load onto a freshly built original: identical weights and outputs."""
    entry = ZOO[name]
    example = entry.example_inputs()
    result = prunec.prune(entry.build(), example, ratio=0.5, verify=False)  # verified in tests/zoo
    prunec.save(result, tmp_path / "pruned")
    fresh = _rerandomized(entry)
    before = state_hash(fresh)
    loaded = prunec.load(tmp_path / "pruned", fresh)
    assert state_hash(fresh) == before, "load modified the model it was given"
    want, got = result.model.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    assert type(loaded) is type(result.model) or result.output_kind == "graph_module"
    assert prunec.count_params(loaded) == result.report.params_after
    out_want, out_got = _call(result.model, example), _call(loaded, example)
    assert torch.equal(out_got, out_want)


def _resnet(widths=(16, 32, 64)):
    torch.manual_seed(0)
    return ResNet(BasicBlock, (1, 1, 1), widths=widths).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A pruned small ResNet, saved once for the tests that only read it."""
    x = torch.randn(2, 3, 16, 16)
    result = prunec.prune(_resnet(), x, ratio=0.5)
    path = tmp_path_factory.mktemp("plans") / "resnet"
    prunec.save(result, path)
    return result, path, x


def test_plan_holds_groups_versions_and_fingerprint(saved):
    """plan.json: format + version, prunec version, original fingerprint, removed slices as returned."""
    result, path, _ = saved
    plan = json.loads((path / PLAN_FILE).read_text())
    assert plan["format"] == "prunec-plan" and plan["format_version"] == PLAN_VERSION == 1
    assert plan["prunec_version"] == prunec.__version__
    assert plan["model"]["fingerprint"] == fingerprint(state_entries(_resnet()))
    assert plan["output_kind"] == "module"
    removed = [[(m[0], m[1], tuple(m[2])) for m in g["members"]] for g in plan["removed"]]
    assert removed == [[(s.param, s.dim, s.indices) for s in g.members] for g in result.removed]
    assert plan["inputs"]["args"] == [{"tensor": [2, 3, 16, 16], "dtype": "float32"}]


def test_save_writes_no_pickled_code(saved):
    """Only plan.json and a safetensors file: a JSON header plus raw tensor bytes, nothing to unpickle."""
    _, path, _ = saved
    assert sorted(p.name for p in path.iterdir()) == [PLAN_FILE, WEIGHTS_FILE]
    raw = (path / WEIGHTS_FILE).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8: 8 + n])
    assert header["__metadata__"] == {"format": "prunec-plan"}
    assert "conv1.weight" in header and header["conv1.weight"]["shape"][0] < 16
    assert not raw.startswith(b"PK") and b"\x80\x02" not in raw[:16]  # not torch.save's zip / pickle


def test_plan_applied_to_another_architecture_is_refused(saved):
    """A ResNet plan on a VGG: PlanError naming the differences; the VGG and the files are untouched."""
    _, path, _ = saved
    vgg = ZOO["vgg_bn"].build()
    before, files = state_hash(vgg), tree_bytes(path)
    with pytest.raises(prunec.PlanError, match=r"plan was made for a different model than this VGG: "
                                               r"'conv1.weight' is missing from the model"):
        prunec.load(path, vgg)
    assert state_hash(vgg) == before and tree_bytes(path) == files


def test_plan_applied_to_another_width_is_refused(saved):
    """Same class, other widths: the message names the parameter and both shapes."""
    _, path, _ = saved
    narrow = _resnet(widths=(12, 24, 48))
    before = state_hash(narrow)
    with pytest.raises(prunec.PlanError, match=r"'conv1.weight' has shape \(12, 3, 3, 3\) in the model, "
                                               r"\(16, 3, 3, 3\) in the plan"):
        prunec.load(path, narrow)
    assert state_hash(narrow) == before


def test_plan_applied_to_the_pruned_model_is_refused(saved):
    """Loading onto an already pruned model says so and asks for the original."""
    result, path, _ = saved
    before = state_hash(result.model)
    with pytest.raises(prunec.PlanError, match="this model is already pruned.*freshly built ORIGINAL model"):
        prunec.load(path, result.model)
    assert state_hash(result.model) == before


def test_plan_applied_to_another_dtype_is_refused(saved):
    """A float64 build of the right architecture: PlanError naming the dtype."""
    _, path, _ = saved
    with pytest.raises(prunec.PlanError, match=r"'conv1.weight' has dtype float64 in the model, float32"):
        prunec.load(path, _resnet().double())


def test_plan_that_does_not_fit_the_groups_is_refused(saved, tmp_path):
    """A plan whose removed slices are not whole groups of this model (edited) is refused."""
    _, path, x = saved
    plan = json.loads((path / PLAN_FILE).read_text())
    plan["removed"][0]["members"] = plan["removed"][0]["members"][:1]  # drop the group's consumers
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / PLAN_FILE).write_text(json.dumps(plan))
    (edited / WEIGHTS_FILE).write_bytes((path / WEIGHTS_FILE).read_bytes())
    with pytest.raises(prunec.PlanError, match="does not fit this model's channel groups"):
        prunec.load(edited, _resnet())


def test_load_in_place_rewrites_the_given_model(saved):
    """inplace=True returns the given object, pruned and holding the saved weights."""
    result, path, x = saved
    fresh = _resnet()
    loaded = prunec.load(path, fresh, inplace=True)
    assert loaded is fresh and fresh.conv1.out_channels == result.model.conv1.out_channels
    with torch.no_grad():
        assert torch.equal(fresh(x), result.model(x))


def test_graph_module_and_ignore_round_trip(tmp_path):
    """A GraphModule output with ignore=: the plan re-runs the graph rewrite with the same pins."""
    x = torch.randn(2, 3, 16, 16)
    result = prunec.prune(_resnet(), x, ratio=0.5, output="graph_module", ignore=["layers.0"])
    prunec.save(result, tmp_path / "gm")
    assert json.loads((tmp_path / "gm" / PLAN_FILE).read_text())["ignore"] == ["layers.0"]
    loaded = prunec.load(tmp_path / "gm", _resnet())
    assert isinstance(loaded, torch.fx.GraphModule)
    assert loaded.state_dict().keys() == result.model.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in result.model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


@pytest.mark.parametrize("tracer", ["record", "export"])
def test_graph_module_is_rebuilt_by_the_tracer_that_made_it(tmp_path, tracer):
    """The recording and torch.export give GraphModules with different state (the recorded one keeps
    every buffer, e.g. num_batches_tracked): the plan names the tracer and load uses it."""
    x = torch.randn(2, 3, 16, 16)
    result = prunec.prune(_resnet(), x, ratio=0.5, output="graph_module", tracer=tracer)
    assert result.analysis.source.tracer == tracer
    prunec.save(result, tmp_path / "gm")
    assert json.loads((tmp_path / "gm" / PLAN_FILE).read_text())["tracer"] == tracer
    loaded = prunec.load(tmp_path / "gm", _resnet())
    assert list(loaded.state_dict()) == list(result.model.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


def test_plan_without_a_tracer_was_traced_by_export(tmp_path):
    """Plans written before prune() recorded name no tracer: they are rebuilt with torch.export."""
    x = torch.randn(2, 3, 16, 16)
    result = prunec.prune(_resnet(), x, ratio=0.5, output="graph_module", tracer="export")
    prunec.save(result, tmp_path / "old")
    plan = json.loads((tmp_path / "old" / PLAN_FILE).read_text())
    del plan["tracer"]
    (tmp_path / "old" / PLAN_FILE).write_text(json.dumps(plan))
    loaded = prunec.load(tmp_path / "old", _resnet())
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))
    plan["tracer"] = "fx"
    (tmp_path / "old" / PLAN_FILE).write_text(json.dumps(plan))
    with pytest.raises(prunec.PlanError, match="the plan names tracer 'fx'"):
        prunec.load(tmp_path / "old", _resnet())


def test_save_replaces_an_earlier_save_atomically(saved, tmp_path):
    """Saving over an earlier save replaces it; no hidden temporary directories remain."""
    result, _, x = saved
    other = prunec.prune(_resnet(), x, ratio=0.25)
    prunec.save(other, tmp_path / "p")
    prunec.save(result, tmp_path / "p")
    assert tree_names(tmp_path) == ["p", "p/plan.json", "p/weights.safetensors"]
    loaded = prunec.load(tmp_path / "p", _resnet())
    assert loaded.conv1.out_channels == result.model.conv1.out_channels


def test_tied_weights_are_stored_once(tmp_path):
    """char_gpt ties its LM head to the embedding: one tensor in the file, the alias in the plan."""
    entry = ZOO["char_gpt"]
    result = prunec.prune(entry.build(), entry.example_inputs(), ratio=0.5)
    prunec.save(result, tmp_path / "gpt")
    plan = json.loads((tmp_path / "gpt" / PLAN_FILE).read_text())
    assert plan["weights"]["aliases"] == {"head.weight": "tok.weight"}
    loaded = prunec.load(tmp_path / "gpt", entry.build())
    assert loaded.get_parameter("head.weight") is loaded.get_parameter("tok.weight")


def test_onnx_results_are_saved_as_onnx_files(tmp_path):
    """prunec.save on an ONNX result points to result.save; nothing is written."""
    from tests.onnx.helpers import export_zoo

    result = prunec.prune(export_zoo("vgg_bn", str(tmp_path)), ratio=0.5)
    before = tree_names(tmp_path)
    with pytest.raises(prunec.InputError, match=r"an ONNX result is saved as an ONNX file: "
                                                r"result.save\('pruned.onnx'\)"):
        prunec.save(result, tmp_path / "plan")
    assert tree_names(tmp_path) == before


def _edit_plan(change):
    def edit(root):
        plan = json.loads((root / PLAN_FILE).read_text())
        change(plan)
        (root / PLAN_FILE).write_text(json.dumps(plan))
    return edit


def _truncate(name, keep):
    def edit(root):
        (root / name).write_bytes((root / name).read_bytes()[:keep])
    return edit


@pytest.mark.parametrize("edit, match", [
    (lambda root: (root / PLAN_FILE).unlink(), r"no pruning plan at .* \(expected plan.json inside it"),
    (_truncate(PLAN_FILE, 40), r"plan.json' is not valid JSON .*corrupt or truncated: save the pruned model"),
    (lambda root: (root / PLAN_FILE).write_text('{"format": "other"}'), r"is not a prunec plan"),
    (_edit_plan(lambda p: p.update(format_version=PLAN_VERSION + 1, prunec_version="9.0")),
     rf"uses plan format {PLAN_VERSION + 1}, written by prunec 9.0; this prunec .* reads plan formats up to "
     rf"{PLAN_VERSION}. Upgrade prunec to load it"),
    (_edit_plan(lambda p: p.update(format_version="1")), r"has an invalid format_version '1'"),
    (_edit_plan(lambda p: p.pop("removed")), r"lacks removed; the plan is incomplete: save it again"),
    (lambda root: (root / WEIGHTS_FILE).unlink(), r"weights file .* is missing; the save is incomplete"),
    (_truncate(WEIGHTS_FILE, 100), r"does not match its plan \(sha256 differs\): it was modified, truncated"),
])
def test_broken_save_directories_are_refused(saved, tmp_path, edit, match):
    """Missing, corrupt, truncated, foreign or newer-format saves: PlanError each; model and files untouched."""
    _, path, _ = saved
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (PLAN_FILE, WEIGHTS_FILE):
        (broken / name).write_bytes((path / name).read_bytes())
    edit(broken)
    fresh = _resnet()
    before, files = state_hash(fresh), tree_bytes(broken)
    with pytest.raises(prunec.PlanError, match=match):
        prunec.load(broken, fresh)
    assert state_hash(fresh) == before and tree_bytes(broken) == files


def test_iterative_prune_round_trips(tmp_path, saved):
    """A two-step prune (steps=2) saves against the ORIGINAL model and loads back bit-exactly."""
    _, _, x = saved
    result = prunec.prune(_resnet(), x, ratio=0.5, steps=2, verify=False)
    assert len(result.steps) == 2
    prunec.save(result, tmp_path / "steps")
    loaded = prunec.load(tmp_path / "steps", _resnet())
    want, got = result.model.state_dict(), loaded.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_head_dim_grouping_round_trips(tmp_path):
    """attention='head_dim' is recorded in the plan, so load re-analyses with the same grouping."""
    entry = ZOO["char_gpt"]
    result = prunec.prune(entry.build(), entry.example_inputs(), ratio=0.5, attention="head_dim", verify=False)
    prunec.save(result, tmp_path / "hd")
    assert json.loads((tmp_path / "hd" / PLAN_FILE).read_text())["attention"] == "head_dim"
    loaded = prunec.load(tmp_path / "hd", entry.build())
    want, got = result.model.state_dict(), loaded.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
