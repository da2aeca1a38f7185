"""Save a pruned model as a plan (JSON) plus weights (safetensors), and load it back: no pickled code.

`save(result, path)` writes a directory:

- `plan.json`: the plan format and its version, the prunec version, a fingerprint of the original
  model (every state_dict name, shape and dtype), the removed groups as member slices in the
  original numbering, the output kind, the example input shapes, and the pruned state's shapes;
- `weights.safetensors`: the pruned model's state (tied tensors stored once, their aliases listed
  in the plan), with its sha256 in the plan.

`load(path, model)` takes a freshly built ORIGINAL model, checks its fingerprint, re-traces it on
inputs of the recorded shapes, removes exactly the plan's channels (the same rewrite `prune` ran:
the same classes, or the GraphModule of the traced program) and fills in the saved weights. The
result is bit-identical to the saved model. Anything that does not match raises PlanError.

A save is atomic: files are written to a hidden sibling directory that is renamed into place at
the end, so an interrupted save (KeyboardInterrupt included) leaves no partial files behind.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunec.errors import InputError, PlanError

PLAN_FORMAT = "prunec-plan"
PLAN_VERSION = 1
"""Version of the plan layout; bumped on any change that an older `load` could misread."""
PLAN_FILE = "plan.json"
WEIGHTS_FILE = "weights.safetensors"
OUTPUT_KINDS = ("module", "graph_module")

StateEntry = tuple[str, tuple[int, ...], str]


def state_entries(model: nn.Module) -> list[StateEntry]:
    """(name, shape, dtype) of every state_dict entry, in state_dict order."""
    return [(k, tuple(int(s) for s in v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in model.state_dict(keep_vars=True).items()]


def fingerprint(entries: Sequence[StateEntry]) -> str:
    """sha256 over the state_dict names, shapes and dtypes (not the values)."""
    h = hashlib.sha256()
    for name, shape, dtype in entries:
        h.update(f"{name}:{list(shape)}:{dtype};".encode())
    return h.hexdigest()


# -- save ------------------------------------------------------------------------------------------

def save(result: Any, path: str | os.PathLike[str]) -> Path:
    """Write `result` (a PruneResult) to the directory `path`: plan.json + weights.safetensors.

    Args:
        result: what `prunec.prune` returned.
        path: a directory to create; an existing prunec save there is replaced atomically.

    Returns:
        The directory written.

    Raises:
        InputError: the result cannot be saved (meta tensors, an output kind without a plan) or
            `path` is something other than a prunec save.

    """
    from prunec import __version__

    target = Path(path)
    _check_destination(target)
    if result.output_kind == "onnx":
        raise InputError("an ONNX result is saved as an ONNX file: result.save('pruned.onnx') (no plan is "
                         "needed, the file holds the pruned graph and weights)")
    if result.output_kind not in OUTPUT_KINDS:
        raise InputError(f"cannot save a result of output kind {result.output_kind!r}: plans reproduce "
                         f"{' and '.join(OUTPUT_KINDS)} outputs only")
    source = result.analysis.source
    tensors, aliases = _unique_tensors(result.model)
    entries = [tuple(e) for e in result.source_state]
    plan = {
        "format": PLAN_FORMAT,
        "format_version": PLAN_VERSION,
        "prunec_version": __version__,
        "torch_version": torch.__version__,
        "model": {"class": result.report.model, "fingerprint": fingerprint(entries),
                  "state": [[n, list(s), d] for n, s, d in entries]},
        "output_kind": result.output_kind,
        "ignore": list(getattr(result.analysis, "ignored", ())),
        "attention": getattr(result.analysis, "attention", "heads"),
        "tracer": getattr(source, "tracer", "export"),
        "inputs": _encode_inputs(source.inputs),
        "removed": [_encode_group(g) for g in result.removed],
        "pruned_state": [[n, list(s), d] for n, s, d in state_entries(result.model)],
        "weights": {"file": WEIGHTS_FILE, "aliases": aliases},
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        _write_weights(tensors, tmp / WEIGHTS_FILE)
        plan["weights"]["sha256"] = _sha256(tmp / WEIGHTS_FILE)
        (tmp / PLAN_FILE).write_text(json.dumps(plan, indent=1) + "\n")
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _check_destination(target: Path) -> None:
    if not target.parent.is_dir():
        raise InputError(f"cannot save to {str(target)!r}: the directory {str(target.parent)!r} does not "
                         "exist; create it first")
    if target.exists() and not (target.is_dir() and (target / PLAN_FILE).is_file()
                                and set(os.listdir(target)) <= {PLAN_FILE, WEIGHTS_FILE}):
        raise InputError(f"cannot save to {str(target)!r}: it exists and is not a prunec save (which holds "
                         f"only {PLAN_FILE} and {WEIGHTS_FILE}); choose a new path")


def _unique_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State to store (each tied tensor once, storage shared with nothing else) and alias -> name."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_name: dict[int, str] = {}
    storages: set[int] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        if t.device.type == "meta":
            raise InputError(f"cannot save '{name}': it is on the meta device (it holds no values); "
                             "load real weights first")
        if id(t) in first_name:
            aliases[name] = first_name[id(t)]
            continue
        first_name[id(t)] = name
        data = t.detach().to("cpu").contiguous()
        ptr = data.untyped_storage().data_ptr()
        if ptr in storages and data.numel() > 0:
            data = data.clone()  # a view of another entry: safetensors stores unshared tensors only
        storages.add(data.untyped_storage().data_ptr())
        tensors[name] = data
    return tensors, aliases


def _write_weights(tensors: Mapping[str, torch.Tensor], file: Path) -> None:
    from safetensors.torch import save_file

    save_file(dict(tensors), str(file), metadata={"format": PLAN_FORMAT})


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename `tmp` to `target`; an existing save is moved aside first and restored on failure."""
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _encode_group(g: Any) -> dict[str, Any]:
    return {"group": g.group_id, "name": g.name, "channels": list(g.channels),
            "zero_invariant": g.zero_invariant,
            "members": [[m.param, m.dim, list(m.indices)] for m in g.members]}


def _encode_inputs(inputs: Any) -> dict[str, Any]:
    """Input structure with tensors as shape/dtype (tracing never reads their values)."""
    def enc(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return {"tensor": [int(s) for s in v.shape], "dtype": str(v.dtype).replace("torch.", "")}
        if isinstance(v, (tuple, list)):
            return {"tuple" if isinstance(v, tuple) else "list": [enc(x) for x in v]}
        if isinstance(v, Mapping) and all(isinstance(k, str) for k in v):
            return {"dict": {k: enc(x) for k, x in v.items()}}
        if v is None or isinstance(v, (bool, int, float, str)):
            return {"value": v}
        raise _NotEncodable(type(v).__name__)

    try:
        return {"args": [enc(a) for a in inputs.args],
                "kwargs": {k: enc(v) for k, v in inputs.kwargs.items()}}
    except _NotEncodable as exc:
        return {"unsupported": str(exc)}


class _NotEncodable(Exception):
    pass


# -- load ------------------------------------------------------------------------------------------

def read_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The plan of a save directory, checked for format and version."""
    file = Path(path) / PLAN_FILE
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise PlanError(f"no pruning plan at {str(path)!r} (expected {PLAN_FILE} inside it; write one with "
                        "prunec.save(result, path))") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read {str(file)!r}: {exc}") from exc
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{str(file)!r} is not valid JSON ({exc.msg} at line {exc.lineno}); the file is "
                        "corrupt or truncated: save the pruned model again") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise PlanError(f"{str(file)!r} is not a prunec plan (no \"format\": \"{PLAN_FORMAT}\")")
    version = plan.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise PlanError(f"{str(file)!r} has an invalid format_version {version!r}")
    if version > PLAN_VERSION:
        from prunec import __version__

        raise PlanError(f"the plan at {str(path)!r} uses plan format {version}, written by prunec "
                        f"{plan.get('prunec_version', '?')}; this prunec ({__version__}) reads plan formats "
                        f"up to {PLAN_VERSION}. Upgrade prunec to load it.")
    required = ("model", "output_kind", "inputs", "removed", "pruned_state", "weights")
    missing = [k for k in required if k not in plan]
    if missing:
        raise PlanError(f"{str(file)!r} lacks {', '.join(missing)}; the plan is incomplete: save it again")
    return plan


def load(path: str | os.PathLike[str], model: nn.Module, *, example_inputs: Any = None,
         inplace: bool = False, rules: Any = None) -> nn.Module:
    """Rebuild a saved pruned model from a freshly built ORIGINAL model.

    Args:
        path: a directory written by `prunec.save`.
        model: the unpruned model, built with the same code and configuration as the one pruned
            (its weights do not matter: the saved ones replace them).
        example_inputs: inputs to trace with; by default inputs of the recorded shapes.
        inplace: rewrite `model` itself (module outputs) instead of a copy.
        rules: the rule registry used when pruning, if it was not the global one.

    Returns:
        The pruned model, bit-identical to the one saved.

    Raises:
        PlanError: the files are missing, corrupt, of a newer format, or do not match `model`.

    """
    from prunec.api import analyze

    root = Path(path)
    plan = read_plan(root)
    _check_fingerprint(plan, model)
    weights = _read_weights(root, plan)
    inputs = example_inputs if example_inputs is not None else _decode_inputs(plan, model)
    working = model if inplace else copy.deepcopy(model)
    # the tracer that made the saved result, so a GraphModule output gets the same graph and state
    # order (plans written before prune() recorded were traced by torch.export)
    tracer = plan.get("tracer", "export")
    if tracer not in ("record", "export"):
        raise PlanError(f"the plan names tracer {tracer!r}; this prunec rebuilds plans traced by 'record' "
                        "or 'export'")
    analysis = analyze(working, inputs, ignore=plan.get("ignore", ()), rules=rules,
                       attention=plan.get("attention", "heads"), tracer=tracer)
    keep = _keep_mask(plan, analysis)
    if plan["output_kind"] == "module":
        from prunec.rewrite import rewrite_module

        rewrite_module(working, analysis, keep)
        pruned: nn.Module = working
    elif plan["output_kind"] == "graph_module":
        from prunec.rewrite import rewrite_graph_module

        pruned = rewrite_graph_module(analysis, keep)
    else:
        raise PlanError(f"the plan's output kind {plan['output_kind']!r} cannot be rebuilt; this prunec "
                        f"rebuilds {' and '.join(OUTPUT_KINDS)} outputs")
    _fill_weights(pruned, weights, plan)
    return pruned


def _describe_differences(want: Sequence[Sequence[Any]], have: Sequence[StateEntry]) -> str:
    w = {e[0]: (tuple(e[1]), e[2]) for e in want}
    h = {e[0]: (tuple(e[1]), e[2]) for e in have}
    lines = [f"'{n}' is missing from the model" for n in w if n not in h]
    lines += [f"the model has '{n}', which the plan does not" for n in h if n not in w]
    for n in w:
        if n in h and w[n] != h[n]:
            what = "shape" if w[n][0] != h[n][0] else "dtype"
            lines.append(f"'{n}' has {what} {h[n][0] if what == 'shape' else h[n][1]} in the model, "
                         f"{w[n][0] if what == 'shape' else w[n][1]} in the plan")
    if not lines:
        lines = ["the state_dict entries come in a different order"]
    more = f" (and {len(lines) - 5} more differences)" if len(lines) > 5 else ""
    return "; ".join(lines[:5]) + more


def _check_fingerprint(plan: dict[str, Any], model: nn.Module) -> None:
    info = plan["model"]
    have = state_entries(model)
    if fingerprint(have) == info.get("fingerprint"):
        return
    pruned = [(n, tuple(s), d) for n, s, d in plan["pruned_state"]]
    if [(n, s, d) for n, s, d in have] == pruned:
        raise PlanError("this model is already pruned (its state matches the plan's pruned shapes); "
                        "prunec.load applies the plan to a freshly built ORIGINAL model: build "
                        f"{info.get('class', 'the model')} as it was before pruning and pass that")
    raise PlanError(f"the plan was made for a different model than this {type(model).__name__}: "
                    f"{_describe_differences(info.get('state', []), have)}. Build the original "
                    f"{info.get('class', 'model')} with the same configuration (and dtype) that was pruned.")


def _read_weights(root: Path, plan: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = plan["weights"]
    file = root / str(info.get("file", WEIGHTS_FILE))
    if not file.is_file():
        raise PlanError(f"the weights file {str(file)!r} is missing; the save is incomplete: save again")
    if info.get("sha256") != _sha256(file):
        raise PlanError(f"the weights file {str(file)!r} does not match its plan (sha256 differs): it was "
                        "modified, truncated or comes from another save. Save the pruned model again.")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise PlanError(f"cannot read the weights file {str(file)!r}: {exc}") from exc


def _decode_inputs(plan: dict[str, Any], model: nn.Module) -> Any:
    spec = plan["inputs"]
    if "unsupported" in spec:
        raise PlanError(f"the plan does not record the example inputs (they held a {spec['unsupported']}); "
                        "pass example_inputs= to prunec.load")
    device = next((t.device for t in model.state_dict().values()), torch.device("cpu"))

    def dec(v: dict[str, Any]) -> Any:
        if "tensor" in v:
            return torch.zeros(v["tensor"], dtype=getattr(torch, v["dtype"]), device=device)
        if "tuple" in v:
            return tuple(dec(x) for x in v["tuple"])
        if "list" in v:
            return [dec(x) for x in v["list"]]
        if "dict" in v:
            return {k: dec(x) for k, x in v["dict"].items()}
        return v["value"]

    from prunec.inputs import ExampleInputs

    return ExampleInputs(tuple(dec(a) for a in spec["args"]), {k: dec(v) for k, v in spec["kwargs"].items()})


def _keep_mask(plan: dict[str, Any], analysis: Any) -> np.ndarray:
    """Atoms to keep, from the plan's member slices.

    Drops the components of every removed member slice, then checks that this removes exactly the
    plan's slices (so the model's channel structure is the one that was pruned).
    """
    cr = analysis.coupling
    table = cr.atoms
    value_of = {}
    for v in analysis.graph.state_values():
        for name in (v.param, *v.aliases):
            value_of[name] = v
    drop = np.zeros(cr.num_components, dtype=bool)
    expected: dict[tuple[str, int], set[int]] = {}
    for g in plan["removed"]:
        for param, dim, indices in g["members"]:
            v = value_of.get(param)
            if v is None or not 0 <= dim < v.rank or (indices and max(indices) >= v.shape[dim]):
                raise PlanError(f"the plan removes {param}[dim {dim}], which this model's traced program "
                                "does not read that way; the model does not match the plan")
            comps = cr.labels[table.atoms(table.value_slot0[v.name] + dim, np.asarray(indices, np.int64))]
            pinned = comps[cr.comp_pinned[comps]]
            if len(pinned):
                rid = int(cr.comp_pin_reason[pinned[0]])
                why = cr.reasons[rid] if rid >= 0 else "pinned"
                raise PlanError(f"the plan removes channels of {param}[dim {dim}] (group '{g['name']}') that "
                                f"this model pins: {why}. Register the op rules and plugins that were "
                                "active when pruning, and load onto the same model.")
            drop[comps] = True
            expected.setdefault((str(v.param), dim), set()).update(int(i) for i in indices)
    keep = ~drop[cr.labels]
    actual = {}
    for name, axes in analysis.state_changes(keep).items():
        for dim, kept in axes.items():
            size = analysis.graph.value(value_of[name].name).shape[dim]
            actual[(name, dim)] = set(range(size)) - {int(i) for i in kept}
    if actual != expected:
        diff = sorted(set(actual) ^ set(expected))
        diff = diff or sorted(k for k in actual if actual[k] != expected.get(k))
        where = ", ".join(f"{n}[dim {d}]" for n, d in diff[:4])
        raise PlanError(f"the plan does not fit this model's channel groups (applying it here would change "
                        f"{where} differently); the model or the op rules differ from the ones that were "
                        "pruned")
    return keep


def _fill_weights(pruned: nn.Module, weights: dict[str, torch.Tensor], plan: dict[str, Any]) -> None:
    full = dict(weights)
    for alias, name in plan["weights"].get("aliases", {}).items():
        if name not in weights:
            raise PlanError(f"the plan ties '{alias}' to '{name}', which the weights file lacks")
        full[alias] = weights[name]
    have = state_entries(pruned)
    want = [(n, tuple(s), d) for n, s, d in plan["pruned_state"]]
    if have != want:
        raise PlanError(f"applying the plan gave a model whose state differs from the saved one: "
                        f"{_describe_differences(plan['pruned_state'], have)}")
    try:
        pruned.load_state_dict(full, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise PlanError(f"the saved weights do not fit the rebuilt model: {first}") from exc


