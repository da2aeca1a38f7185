"""The public pass API: state, pass base, registry, manager and textual pipelines."""

from prunec.pipeline.manager import PassManager
from prunec.pipeline.parse import format_pipeline, parse_pipeline
from prunec.pipeline.pass_base import Pass, PassResult
from prunec.pipeline.registry import PASSES, PassEntry, register_pass
from prunec.pipeline.state import ARTIFACT_FIELDS, Artifact, PruneState

__all__ = ["ARTIFACT_FIELDS", "PASSES", "Artifact", "Pass", "PassEntry", "PassManager", "PassResult",
           "PruneState", "format_pipeline", "parse_pipeline", "register_pass"]
