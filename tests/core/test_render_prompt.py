"""The prompts the Gemini models get."""

from __future__ import annotations

import pytest

from core.render_prompt import MODEL_INSTRUCTIONS, OPERATION_INSTRUCTIONS, TEXT_DETECT_PROMPT, qa_prompt, render_prompt
from core.render_spec import MODEL_OPERATIONS
from protocol.image import Operation


@pytest.mark.parametrize("operation", sorted(MODEL_OPERATIONS))
def test_every_operation_the_model_has_a_part_in_is_instructed(operation: Operation) -> None:
    prompt = render_prompt(operation, "1:1", False, (), ())
    assert prompt.startswith(MODEL_INSTRUCTIONS[operation])


@pytest.mark.parametrize("operation", list(Operation))
def test_the_quality_check_is_told_what_every_order_delivers(operation: Operation) -> None:
    assert OPERATION_INSTRUCTIONS[operation] in qa_prompt(operation, ())


@pytest.mark.parametrize("operation", [Operation.RESIZE, Operation.REMOVE_BG])
def test_no_prompt_for_what_is_done_locally(operation: Operation) -> None:
    with pytest.raises(ValueError, match="done locally"):
        render_prompt(operation, "1:1", False, (), ())


def test_the_layered_plate_is_the_scene_without_its_subject() -> None:
    prompt = render_prompt(Operation.LAYERED, "4:3", False, (), ())
    assert "Remove the main subject" in prompt and "background plate" in prompt


def test_aspect_ratio_and_perspective_are_stated() -> None:
    plain = render_prompt(Operation.ENHANCE, "16:9", False, (), ())
    fixed = render_prompt(Operation.ENHANCE, "16:9", True, (), ())
    assert "aspect ratio: 16:9" in plain
    assert "perspective" not in plain.lower()
    assert "Correct the perspective" in fixed


def test_notes_and_revision_notes_appear_verbatim() -> None:
    notes = ("背景换成纯白色", "人脸不要改")
    revisions = ("颜色不对,再亮一点",)
    prompt = render_prompt(Operation.ENHANCE, "3:4", False, notes, revisions)
    for note in (*notes, *revisions):
        assert f"«{note}»" in prompt
    assert prompt.index("人脸不要改") < prompt.index("颜色不对")
    assert "take priority" in prompt


def test_blank_notes_add_nothing() -> None:
    assert render_prompt(Operation.ENHANCE, "1:1", False, (" ", ""), ("",)) == render_prompt(
        Operation.ENHANCE, "1:1", False, (), ()
    )
    assert "requirements" not in render_prompt(Operation.ENHANCE, "1:1", False, (), ())


@pytest.mark.parametrize("bad", ["", "1", "16/9", "0:1", "a:b", "16:9 "])
def test_a_malformed_aspect_ratio_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        render_prompt(Operation.ENHANCE, bad, False, (), ())


def test_qa_prompt_asks_for_the_json_fields_and_quotes_the_notes() -> None:
    prompt = qa_prompt(Operation.FIX_OLD_PHOTO, ("去掉划痕",))
    assert "«去掉划痕»" in prompt
    assert "score" in prompt and "reason" in prompt


def test_text_detection_prompt_names_its_fields() -> None:
    assert "has_text" in TEXT_DETECT_PROMPT and "text" in TEXT_DETECT_PROMPT
