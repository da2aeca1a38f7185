"""Built-in passes, written only against prunec's public pass API (installed as prunec.passes)."""

from prunec.passes.criteria.magnitude import L1, L2, Magnitude
from prunec.passes.optimizers import (
    CRIC,
    DHSPG,
    HESSO,
    HSPG,
    GroupSparseOptimizer,
    TrainGroupSparse,
    ZeroGroupsPass,
    make_optimizer,
)
from prunec.passes.rewrite.graph_module import RewriteGraphModulePass
from prunec.passes.rewrite.module import RewriteModulePass
from prunec.passes.select.uniform import SelectUniformPass, plan_uniform, search_ratio
from prunec.passes.verify.equivalence import VerifyPass

__all__ = [
    # criteria
    "L1", "L2", "Magnitude",
    # selection
    "SelectUniformPass", "plan_uniform", "search_ratio",
    # rewrite
    "RewriteGraphModulePass", "RewriteModulePass",
    # verification
    "VerifyPass",
    # train once: structured-sparse optimizers and their passes
    "CRIC", "DHSPG", "HESSO", "HSPG", "GroupSparseOptimizer", "TrainGroupSparse", "ZeroGroupsPass",
    "make_optimizer",
]
