"""Textual and list pipelines: parsing, typed options, round trips, and every syntax error."""

from __future__ import annotations

import pytest
from prunec.passes import L1, RewriteModulePass, SelectUniformPass, VerifyPass

import prunec
from prunec.pipeline import format_pipeline, parse_pipeline
from prunec.scoring import ScoreGroupsPass


def test_text_pipeline_builds_typed_passes() -> None:
    """Names become pass objects; options are converted to the field types (float, int, bool)."""
    text = "l1,select-uniform{ratio=0.25,round_to=8},rewrite-module,verify{seeds=1,fallback=no}"
    passes = parse_pipeline(text)
    assert passes[0] == ScoreGroupsPass(criterion=L1())
    assert passes[1] == SelectUniformPass(ratio=0.25, round_to=8)
    assert passes[2] == RewriteModulePass()
    assert passes[3] == VerifyPass(seeds=1, fallback=False)


def test_target_option_keeps_its_equals_sign() -> None:
    """'target=macs=0.5' splits at the first '=' only."""
    assert parse_pipeline("select-uniform{target=macs=0.5}")[0] == SelectUniformPass(target="macs=0.5")


def test_list_pipeline_mixes_texts_and_passes() -> None:
    """A list may hold step texts and Pass instances; it formats back to the equivalent text."""
    passes = parse_pipeline(["l2", SelectUniformPass(ratio=0.5), "rewrite-module"])
    assert [p.key for p in passes] == ["score", "select-uniform", "rewrite-module"]
    assert format_pipeline(passes) == "l2,select-uniform{ratio=0.5},rewrite-module"


def test_format_round_trips() -> None:
    """format_pipeline(parse_pipeline(text)) is the text (options that differ from defaults only)."""
    text = "magnitude{p=3.0},select-uniform{ratio=0.3,min_keep=2},rewrite-graph-module,verify{seeds=4}"
    assert format_pipeline(parse_pipeline(text)) == text
    assert parse_pipeline(format_pipeline(parse_pipeline(text))) == parse_pipeline(text)


def test_pass_manager_prints_its_pipeline() -> None:
    """str(PassManager) is the pipeline text."""
    assert str(prunec.PassManager(parse_pipeline("l1,select-uniform,verify"))) == "l1,select-uniform,verify"


@pytest.mark.parametrize(("text", "message"), [
    ("l2,select-uniform}", r"unbalanced '\}' in pipeline 'l2,select-uniform\}'"),
    ("l2,select-uniform{ratio=0.5", r"unbalanced '\{' in pipeline"),
    ("select-uniform{ratio=0.5}x",
     r"options of 'select-uniform' must end with '\}': 'select-uniform\{ratio=0.5\}x'"),
    ("select-uniform{ratio}", r"option 'ratio' of 'select-uniform' must look like key=value"),
    ("select-uniform{ratio=0.5,ratio=0.2}", r"option 'ratio' of 'select-uniform' is given twice"),
    ("{ratio=0.5}", r"pipeline step '\{ratio=0.5\}' has options but no pass name"),
    ("", r"the pipeline is empty; name at least one pass"),
    (" , ", r"the pipeline is empty"),
])
def test_syntax_errors(text: str, message: str) -> None:
    """Each malformed pipeline text gets its own message."""
    with pytest.raises(prunec.PipelineSyntaxError, match=message):
        parse_pipeline(text)


def test_unknown_names_reported_together_with_closest() -> None:
    """All unknown names are listed at once, each with its closest known name, and how to add one."""
    with pytest.raises(prunec.PipelineSyntaxError,
                       match=r"unknown pass\(es\) 'selct-uniform' \(did you mean 'select-uniform'\?\), "
                             r"'rewrite-modul' \(did you mean 'rewrite-module'\?\), 'zzz'; known: .*"
                             r"Register your own with @prunec.register_pass"):
        parse_pipeline("l2,selct-uniform,rewrite-modul,zzz")


@pytest.mark.parametrize(("text", "message"), [
    ("select-uniform{ratoi=0.5}", r"pass 'select-uniform' has no option 'ratoi'; did you mean 'ratio'\?"),
    ("verify{xyz=1}",
     r"pass 'verify' has no option 'xyz'; its options are \['fallback', 'seeds', 'tolerance'\]"),
    ("l2{q=3}", r"pass 'l2' has no option 'q'; its options are \['p'\]"),
])
def test_unknown_options(text: str, message: str) -> None:
    """An unknown option names the closest option, or lists them all."""
    with pytest.raises(prunec.PipelineSyntaxError, match=message):
        parse_pipeline(text)


@pytest.mark.parametrize(("text", "message"), [
    ("select-uniform{ratio=half}", r"option 'ratio' of 'select-uniform' expects float or none, got 'half'"),
    ("select-uniform{round_to=8.5}", r"option 'round_to' of 'select-uniform' expects int or none, got '8.5'"),
    ("verify{fallback=maybe}", r"option 'fallback' of 'verify' expects bool, got 'maybe'"),
    ("verify{seeds=two}", r"option 'seeds' of 'verify' expects int, got 'two'"),
])
def test_ill_typed_options(text: str, message: str) -> None:
    """An option value that does not fit its field's type says what was expected."""
    with pytest.raises(prunec.PipelineSyntaxError, match=message):
        parse_pipeline(text)


def test_list_item_of_wrong_type() -> None:
    """A list pipeline item that is neither text nor a Pass is rejected with its type."""
    with pytest.raises(prunec.PipelineSyntaxError, match=r"pipeline item 3 \(int\) is neither a step text "
                                                         r"nor a Pass instance"):
        parse_pipeline(["l2", 3])  # type: ignore[list-item]


def test_literal_option_lists_its_choices() -> None:
    """An option typed Literal accepts its values only, and says which they are."""
    from dataclasses import dataclass
    from typing import ClassVar, Literal

    from prunec import Artifact, Pass, PassResult, register_pass

    @register_pass("pick-mode")
    @dataclass(frozen=True)
    class PickMode(Pass):
        provides: ClassVar = frozenset({Artifact.MASKS})
        mode: Literal["fast", "exact"] = "fast"

        def run(self, state):
            return PassResult(state.replace(masks={}))

    assert parse_pipeline("pick-mode{mode=exact}") == [PickMode(mode="exact")]
    with pytest.raises(prunec.PipelineSyntaxError, match=r"option 'mode' of 'pick-mode' expects 'fast' or "
                                                         r"'exact', got 'slow'"):
        parse_pipeline("pick-mode{mode=slow}")
