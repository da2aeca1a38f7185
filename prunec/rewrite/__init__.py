"""Rewrites from an analysis and a removal to a physically smaller model."""

from prunec.rewrite.module_fixers import ModuleContext, register_fixer, register_model_fixer
from prunec.rewrite.resize import Args, ResizeContext, register_resizer
from prunec.rewrite.to_graph_module import rewrite_graph_module
from prunec.rewrite.to_module import ModuleRewrite, rewrite_module

from prunec.rewrite import attention_fixers as _attention_fixers  # noqa: E402,F401  (attention, HF)

__all__ = ["Args", "ModuleContext", "ModuleRewrite", "ResizeContext", "register_fixer", "register_model_fixer",
           "register_resizer", "rewrite_graph_module", "rewrite_module"]
