"""Structured-sparse optimizers that drive whole channel groups to exactly zero (train once).

HSPG (OTOv1), DHSPG (OTOv2), HESSO and HESSO with CRIC, each a torch.optim.Optimizer built from
`prunec.analyze` groups and a target ('macs=0.5', 'params=0.5', 'ratio=0.4'), plus the
`train-group-sparse` and `zero-groups` passes that turn the zeros into masks.
"""

from prunec.passes.optimizers.base import GroupSparseOptimizer, Schedule
from prunec.passes.optimizers.budget import Budget
from prunec.passes.optimizers.cric import CRIC
from prunec.passes.optimizers.dhspg import DHSPG
from prunec.passes.optimizers.hesso import HESSO
from prunec.passes.optimizers.hspg import HSPG
from prunec.passes.optimizers.train_group_sparse import (
           OPTIMIZERS,
           TrainGroupSparse,
           make_optimizer,
           run_training,
)
from prunec.passes.optimizers.units import ChannelUnits
from prunec.passes.optimizers.zero_groups import ZeroGroupsPass, exact_zero_channels

__all__ = ["CRIC", "DHSPG", "HESSO", "HSPG", "OPTIMIZERS", "Budget", "ChannelUnits", "GroupSparseOptimizer",
           "Schedule", "TrainGroupSparse", "ZeroGroupsPass", "exact_zero_channels", "make_optimizer",
           "run_training"]
