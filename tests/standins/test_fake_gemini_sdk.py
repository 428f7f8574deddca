"""The Gemini stand-in through the real google-genai SDK: image shapes, refusals, schema answers and counts."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from standins.fake_gemini import ConfigRequest, FakeGemini, FaultSpec, RiskAnswer
from tests.harness import http

IMAGE_MODEL = "gemini-2.5-flash-image"
TEXT_MODEL = "gemini-2.5-flash-lite"

# Google's table for gemini-2.5-flash-image at the default 1K size (ai.google.dev image-generation docs),
# written out here rather than imported so a slip in the stand-in's copy fails.
DOCUMENTED_1K = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
    "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
}


def photo(size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """Left half red, right half blue (transparent on the right in RGBA), so crops and flips show."""
    img = Image.new(mode, size, (200, 0, 0, 255)[:len(mode)])
    img.paste((0, 0, 200, 0)[:len(mode)], (size[0] // 2, 0, size[0], size[1]))
    buffer = io.BytesIO()
    img.save(buffer, fmt)
    return buffer.getvalue()



@pytest.fixture()
def client(fake_gemini: FakeGemini) -> Iterator[genai.Client]:
    sdk = genai.Client(api_key="test-key", vertexai=False,
                       http_options=types.HttpOptions(base_url=fake_gemini.base_url, api_version="v1beta"))
    yield sdk
    sdk.close()


def render(client: genai.Client, image: bytes | None, aspect_ratio: str | None = None, image_size: str | None = None,
           mime: str = "image/png") -> Image.Image:
    contents: list[Any] = ["make it sharper"]
    if image is not None:
        contents.append(types.Part.from_bytes(data=image, mime_type=mime))
    image_config = types.ImageConfig(aspect_ratio=aspect_ratio, image_size=image_size)
    config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"], image_config=image_config)
    response = client.models.generate_content(model=IMAGE_MODEL, contents=contents, config=config)
    [blob] = [p.inline_data for p in response.candidates[0].content.parts if p.inline_data is not None]
    assert blob.mime_type == "image/png"
    result = Image.open(io.BytesIO(blob.data or b""))
    assert (result.format, result.mode) == ("PNG", "RGB")
    return result


def structured(client: genai.Client, **schema: Any) -> Any:
    config = types.GenerateContentConfig(response_mime_type="application/json", **schema)
    return json.loads(client.models.generate_content(model=TEXT_MODEL, contents="judge", config=config).text or "")


@pytest.mark.parametrize("ratio", list(DOCUMENTED_1K))
def test_each_documented_ratio_gives_its_documented_size(client: genai.Client, ratio: str) -> None:
    assert render(client, photo((300, 200)), ratio).size == DOCUMENTED_1K[ratio]


def test_image_size_scales_the_table_and_only_documented_sizes_pass(client: genai.Client,
                                                                    fake_gemini: FakeGemini) -> None:
    assert render(client, photo((300, 200)), "16:9", "2K").size == (2688, 1536)
    assert render(client, photo((300, 200)), "16:9", "1K").size == (1344, 768)
    with pytest.raises(errors.ClientError) as caught:
        render(client, photo((300, 200)), "16:9", "3K")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert "image_size must be one of '1K', '2K', or '4K'" in (caught.value.message or "")


@pytest.mark.parametrize(("source", "expected"), [
    ((640, 480), "4:3"), ((480, 640), "3:4"), ((333, 333), "1:1"), ((1920, 1080), "16:9"), ((1000, 120), "21:9"),
    ((500, 400), "5:4"), ((400, 600), "2:3"),
])
def test_without_a_ratio_an_edit_keeps_the_inputs_shape(client: genai.Client, source: tuple[int, int],
                                                         expected: str) -> None:
    assert render(client, photo(source)).size == DOCUMENTED_1K[expected]


def test_a_prompt_without_an_image_gets_a_square(client: genai.Client) -> None:
    assert render(client, None).size == (1024, 1024)


def test_the_output_is_the_input_cropped_from_the_centre(client: genai.Client) -> None:
    wide = Image.new("RGB", (900, 300), (0, 160, 0))
    wide.paste((200, 0, 0), (300, 0, 450, 300))
    wide.paste((0, 0, 200), (450, 0, 600, 300))
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", quality=95)
    result = render(client, buffer.getvalue(), "1:1", mime="image/jpeg")
    left, right = result.getpixel((100, 512)), result.getpixel((924, 512))
    assert left[0] > 150 and left[1] < 60  # red, not the green cut off the sides
    assert right[2] > 150 and right[1] < 60


def test_transparency_is_flattened_away(client: genai.Client) -> None:
    result = render(client, photo((400, 400), "RGBA"), "1:1")
    assert result.getpixel((100, 512))[0] > 150
    assert min(result.getpixel((924, 512))) > 200  # transparent became opaque white, no alpha channel


def test_an_undocumented_ratio_is_a_client_error_in_googles_words(client: genai.Client,
                                                                  fake_gemini: FakeGemini) -> None:
    for ratio in ("7:3", "2:1", "800x600"):
        with pytest.raises(errors.ClientError) as caught:
            render(client, photo((300, 200)), ratio)
        assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
        assert "aspect_ratio must be one of '1:1', '2:3'" in (caught.value.message or "")
    assert [e["outcome"] for e in fake_gemini.requests()] == ["400"] * 3


def test_images_gemini_cannot_read_are_refused(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        render(client, photo((40, 30), fmt="GIF"), "1:1", mime="image/gif")
    assert caught.value.code == 400 and "Unsupported MIME type: image/gif" in (caught.value.message or "")
    with pytest.raises(errors.ClientError) as caught:
        render(client, b"not an image at all", "1:1")
    assert caught.value.code == 400 and caught.value.message == "Provided image is not valid."


def test_a_configured_answer_outside_the_enum_does_not_leak(client: genai.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.configure(ConfigRequest(risk=RiskAnswer(verdict="decline", reason="身份证")))
    schema = types.Schema(type=types.Type.OBJECT, required=["risk_verdict", "risk_reason"], properties={
        "risk_verdict": types.Schema(type=types.Type.STRING, enum=["accept", "human"]),
        "risk_reason": types.Schema(type=types.Type.STRING)})
    assert structured(client, response_schema=schema) == {"risk_reason": "身份证", "risk_verdict": "accept"}
    schema.properties["risk_verdict"].enum = ["accept", "human", "decline"]
    assert structured(client, response_schema=schema)["risk_verdict"] == "decline"


def test_the_qa_score_is_clamped_into_the_schemas_range(client: genai.Client, fake_gemini: FakeGemini) -> None:
    def qa(low: int, high: int, kind: str = "integer") -> dict[str, Any]:
        return {"type": "object", "required": ["score", "reason"], "properties": {
            "score": {"type": kind, "minimum": low, "maximum": high}, "reason": {"type": "string"}}}

    assert structured(client, response_json_schema=qa(0, 10))["score"] == 10
    fake_gemini.configure(ConfigRequest(qa_score=30))
    assert structured(client, response_json_schema=qa(50, 100, "number"))["score"] == 50
    assert structured(client, response_json_schema=qa(0, 100))["score"] == 30
    upper = types.Schema(type=types.Type.OBJECT, required=["score"], properties={
        "score": types.Schema(type=types.Type.INTEGER, minimum=0, maximum=5)})
    assert structured(client, response_schema=upper) == {"score": 5}


def test_answers_take_the_schemas_shape(client: genai.Client) -> None:
    item = types.Schema(type=types.Type.OBJECT, required=["x", "y"], properties={
        "y": types.Schema(type=types.Type.NUMBER, minimum=2.5), "x": types.Schema(type=types.Type.BOOLEAN)})
    schema = types.Schema(
        type=types.Type.OBJECT, required=["zeta", "alpha", "boxes", "when"], property_ordering=["zeta", "alpha"],
        properties={
            "alpha": types.Schema(type=types.Type.INTEGER, minimum=7, maximum=9),
            "zeta": types.Schema(type=types.Type.STRING, enum=["on", "off"]),
            "boxes": types.Schema(type=types.Type.ARRAY, items=item, min_items=2, max_items=3),
            "when": types.Schema(type=types.Type.STRING, format="date-time"),
            "optional": types.Schema(type=types.Type.STRING),
        })
    value = structured(client, response_schema=schema)
    assert list(value) == ["zeta", "alpha", "boxes", "when"]  # propertyOrdering first, then alphabetical
    assert value["zeta"] == "on" and 7 <= value["alpha"] <= 9 and isinstance(value["alpha"], int)
    assert value["boxes"] == [{"x": False, "y": 2.5}] * 2  # responseSchema objects alphabetical
    assert value["when"].endswith("Z")
    assert "optional" not in value  # only required properties are certain

    json_schema = {"type": "object", "required": ["b", "a"], "properties": {
        "b": {"type": ["string", "null"], "maxLength": 1}, "a": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}]}}}
    value = structured(client, response_json_schema=json_schema)
    assert list(value) == ["b", "a"] and value == {"b": "示", "a": [1, False]}


def test_counts_by_kind_and_image_outcome_and_reset_clears_them(client: genai.Client, fake_gemini: FakeGemini) -> None:
    fake_gemini.add_faults([FaultSpec(kind="429", retry_delay_s=0)], model="image")
    with pytest.raises(errors.ClientError):
        render(client, photo((30, 20)), "1:1")
    render(client, photo((30, 20)), "1:1")
    render(client, photo((30, 20)))
    with pytest.raises(errors.ClientError):
        render(client, photo((30, 20)), "5:3")
    structured(client, response_json_schema={"type": "object"})
    client.models.generate_content(model=TEXT_MODEL, contents="你好")
    status, counts = http("GET", f"{fake_gemini.base_url}/_control/counts")
    assert status == 200
    assert counts == {"image": 4, "json": 1, "text": 1, "image_ok": 2, "image_429": 1, "image_400": 1}
    assert counts == fake_gemini.counts()
    http("POST", f"{fake_gemini.base_url}/_control/reset")
    assert http("GET", f"{fake_gemini.base_url}/_control/counts")[1] == {
        "image": 0, "json": 0, "text": 0, "image_ok": 0}
