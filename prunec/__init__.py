"""prunec: a graph-based structured-pruning compiler for PyTorch and ONNX models.

    result = prunec.prune(model, example_inputs, ratio=0.5)
    result.model, result.removed, result.report
"""

from prunec.analysis.coupling import Pinned
from prunec.analysis.groups import Group, PinnedParam, RemovedGroup, Slice
from prunec.analysis.result import Analysis
from prunec.api import PruneResult, analyze, count_params, prune
from prunec.errors import (
    InputError,
    IRError,
    OnnxModelError,
    PassError,
    PassOrderError,
    PipelineSyntaxError,
    PlanError,
    PluginError,
    PostconditionError,
    PruneError,
    RuleConflictError,
    TargetError,
    TraceError,
    UnsupportedOpError,
    VerificationError,
)
from prunec.pipeline import Artifact, Pass, PassManager, PassResult, PruneState, parse_pipeline, register_pass
from prunec.persistence import load, save
from prunec.reference import zeroed_copy
from prunec.report import PruneReport
from prunec.rules import op_rule
from prunec.scoring import Criterion, SliceData, register_criterion
from prunec.targets import Target
from prunec.train_once import TrainOnceResult, compile_zero_groups, train_once

__version__ = "0.1.0"

__all__ = [
    # one-call API
    "Analysis", "PruneResult", "analyze", "count_params", "prune", "zeroed_copy",
    # train once
    "TrainOnceResult", "compile_zero_groups", "train_once",
    # persistence
    "load", "save",
    # results
    "Group", "Pinned", "PinnedParam", "PruneReport", "RemovedGroup", "Slice", "Target",
    # extension points
    "Artifact", "Criterion", "Pass", "PassManager", "PassResult", "PruneState", "SliceData", "op_rule",
    "parse_pipeline", "register_criterion", "register_pass",
    # errors
    "IRError", "InputError", "OnnxModelError", "PassError", "PassOrderError", "PipelineSyntaxError",
    "PlanError", "PluginError", "PostconditionError", "PruneError", "RuleConflictError", "TargetError",
    "TraceError", "UnsupportedOpError", "VerificationError",
    "__version__",
]
