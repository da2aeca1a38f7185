"""The public pass API: state, pass base, registry, manager and textual pipelines."""

from prunec.pipeline.manager import PassManager
from prunec.pipeline.parse import parse_pipeline
from prunec.pipeline.pass_base import Pass, PassResult
from prunec.pipeline.registry import PASSES, register_pass
from prunec.pipeline.state import Artifact, PruneState

__all__ = ["PASSES", "Artifact", "Pass", "PassManager", "PassResult", "PruneState", "parse_pipeline",
           "register_pass"]
