"""Built-in passes, written only against prunec's public pass API (installed as prunec.passes)."""

from prunec.passes.criteria.activation import Activation
from prunec.passes.criteria.bn_scale import BNScale
from prunec.passes.criteria.hessian import Hessian
from prunec.passes.criteria.lamp import LAMP
from prunec.passes.criteria.magnitude import L1, L2, Magnitude
from prunec.passes.criteria.random import Random
from prunec.passes.criteria.reconstruct import ReconstructPass
from prunec.passes.criteria.taylor import Taylor
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
from prunec.passes.select.global_rank import SelectGlobalPass
from prunec.passes.select.uniform import SelectUniformPass, plan_uniform, search_ratio
from prunec.passes.verify.equivalence import VerifyPass

__all__ = [
    # criteria
    "LAMP", "L1", "L2", "Activation", "BNScale", "Hessian", "Magnitude", "Random", "Taylor",
    # selection
    "SelectGlobalPass", "SelectUniformPass", "plan_uniform", "search_ratio",
    # weight refit
    "ReconstructPass",
    # rewrite
    "RewriteGraphModulePass", "RewriteModulePass",
    # verification
    "VerifyPass",
    # train once: structured-sparse optimizers and their passes
    "CRIC", "DHSPG", "HESSO", "HSPG", "GroupSparseOptimizer", "TrainGroupSparse", "ZeroGroupsPass",
    "make_optimizer",
]
