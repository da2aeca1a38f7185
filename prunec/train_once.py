"""Train once: train the full model with a structured-sparse optimizer, compile the zeros away.

    result = prunec.train_once(model, x, loss_fn, steps=2000, target="macs=0.5",
                               optimizer="hesso", lr=0.05, momentum=0.9)
    result.model        # the compiled subnet (physically smaller)
    result.trained      # the trained full-size model (its redundant channels are exactly 0.0)

The same loop by hand, for custom training code (DDP, AMP, schedulers, clipping):

    analysis = prunec.analyze(model, x)
    opt = prunec.passes.HESSO(model, analysis, "macs=0.5", steps=2000, lr=0.05, momentum=0.9)
    for step in range(2000):                       # your loop
        loss = ...; opt.zero_grad(); loss.backward(); opt.step()
    result = prunec.compile_zero_groups(model, x)  # remove the zero channels, verified

Compiling is lossless: removing channels that are exactly zero in zero-invariant groups changes
nothing, and `compile_zero_groups` checks that the compiled model computes what the trained model
computes (not only the contract's zeroed copy) before returning it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunec.api import PruneResult, analyze, prune
from prunec.errors import InputError, VerificationError
from prunec.inputs import ExampleInputs, ExampleInputsLike
from prunec.verify import check_equivalent


@dataclass(frozen=True, eq=False)
class TrainOnceResult:
    """The compiled subnet, the trained full model, the optimizer, and the compile's PruneResult."""

    model: nn.Module
    """The compiled model: zero channels removed."""
    trained: nn.Module
    """The trained full-size model (the one passed in, trained in place)."""
    optimizer: Any
    """The structured-sparse optimizer, with its final state."""
    compiled: PruneResult
    """`.removed` (original numbering), `.report` (MACs/params before and after), `.verification`."""
    max_difference: float
    """Worst relative output difference, compiled vs trained, over the checked inputs."""


def compile_zero_groups(model: nn.Module, example_inputs: ExampleInputsLike, *,
                        ignore: Iterable[str | nn.Module] = (), output: str = "auto",
                        tolerance: float = 1e-4, seeds: int = 2) -> tuple[PruneResult, float]:
    """Remove every exactly-zero channel of `model`'s zero-invariant groups; verify it is lossless.

    Args:
        model: a trained model (not modified).
        example_inputs: inputs for tracing and checking (GraphModule outputs keep their shapes).
        ignore: modules whose output channels stay (as for `prunec.prune`).
        output: 'auto', 'module' or 'graph_module'.
        tolerance: largest relative output difference accepted.
        seeds: random inputs of the example's shapes checked besides the example.

    Returns:
        (PruneResult, worst relative difference between the compiled and the given model).

    Raises:
        VerificationError: the compiled model does not compute what `model` computes.

    """
    from prunec.passes import RewriteGraphModulePass, RewriteModulePass, VerifyPass, ZeroGroupsPass

    rewrite = RewriteGraphModulePass() if output == "graph_module" else RewriteModulePass()
    passes = [ZeroGroupsPass(), rewrite, VerifyPass(seeds=seeds, fallback=output == "auto")]
    inputs = ExampleInputs.from_user(example_inputs)
    checks = [inputs] + [inputs.randomized(100 + s) for s in range(seeds)]
    # Eval mode throughout: a model verified in train mode would update its BN running statistics
    # (which the traced reference shares) while being checked.
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        result = prune(model, example_inputs, target="macs=1.0", ignore=ignore, output=output,
                       pipeline=passes, tolerance=tolerance)
        result.model.eval()
        report = check_equivalent(result.model, model, checks, reference_name="the trained model",
                                  tolerance=tolerance)
    finally:
        for m, flag in modes:
            m.training = flag
    if not report.passed:
        raise VerificationError(
            f"the compiled model differs from the trained model: {report}. The zero channels' buffers "
            "(running statistics) must matter to the output; please report this model.")
    return result, report.max_relative_diff


def train_once(model: nn.Module, example_inputs: ExampleInputsLike,
               loss_fn: Callable[[nn.Module, int], torch.Tensor], *, steps: int,
               optimizer: str = "hesso", target: str | None = "macs=0.5",
               ignore: Iterable[str | nn.Module] = (), output: str = "auto", tolerance: float = 1e-4,
               on_step: Callable[[int, float], None] | None = None, **options: Any) -> TrainOnceResult:
    """Train `model` in place with a structured-sparse optimizer, then compile the zero channels away.

    Args:
        model: the full model (trained in place).
        example_inputs: inputs for tracing (and for checking the compiled model).
        loss_fn: loss_fn(model, step) -> the loss of one training batch.
        steps: optimizer steps (the optimizer's schedule is derived from it).
        optimizer: 'hesso' (default), 'cric', 'dhspg' or 'hspg'.
        target: 'macs=0.5' / 'params=0.5' (share the compiled model keeps) or 'ratio=0.4'
            (fraction of prunable channels zeroed); HSPG also accepts None (no cap).
        ignore: modules whose output channels stay.
        output: 'auto', 'module' or 'graph_module'.
        tolerance: largest relative difference accepted between the compiled and trained model.
        on_step: called as on_step(step, loss) after every step.
        **options: optimizer options (lr, variant, momentum, weight_decay, warmup_steps, ...).

    Returns:
        TrainOnceResult.

    Raises:
        TargetError: the target cannot be reached on this model.
        InputError: bad options, or too few steps for the optimizer's schedule.
        VerificationError: the compiled model does not compute what the trained model computes.

    """
    from prunec.passes.optimizers import make_optimizer, run_training

    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps!r}")
    analysis = analyze(model, example_inputs, ignore=ignore)
    if optimizer != "hspg":
        options.setdefault("steps", steps)
    opt = make_optimizer(optimizer, model, analysis, target, **options)
    run_training(model, opt, loss_fn, steps, on_step)
    compiled, diff = compile_zero_groups(model, example_inputs, ignore=ignore, output=output,
                                         tolerance=tolerance)
    return TrainOnceResult(compiled.model, model, opt, compiled, diff)

