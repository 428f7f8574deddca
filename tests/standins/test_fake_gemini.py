"""The Gemini stand-in spoken to in Google's REST wire format with plain HTTP, and run as a command.

What the SDK sees is in test_fake_gemini_sdk.py; here is what only raw requests can show.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from standins.fake_gemini import FakeGemini
from tests.harness import REPO, free_port, http, wait_for

KEY_HEADER = {"x-goog-api-key": "any-key"}


def png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def image_request(image: bytes, aspect_ratio: str | None = None, text: str = "make it sharper") -> dict[str, Any]:
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if aspect_ratio:
        config["imageConfig"] = {"aspectRatio": aspect_ratio}
    return {"contents": [{"role": "user", "parts": [
        {"text": text}, {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(image).decode()}}]}],
        "generationConfig": config}


def json_request(schema: dict[str, Any], field: str = "responseJsonSchema") -> dict[str, Any]:
    return {"contents": [{"parts": [{"text": "judge"}]}],
            "generationConfig": {"responseMimeType": "application/json", field: schema}}



def generate(fake_gemini: FakeGemini, model: str, body: dict[str, Any], version: str = "v1beta",
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = f"{fake_gemini.base_url}/{version}/models/{model}:generateContent"
    return http("POST", url, body, headers=KEY_HEADER if headers is None else headers)


def answer_image(answer: dict[str, Any]) -> Image.Image:
    [candidate] = answer["candidates"]
    assert candidate["finishReason"] == "STOP"
    [blob] = [p["inlineData"] for p in candidate["content"]["parts"] if "inlineData" in p]
    assert blob["mimeType"] == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(blob["data"])))


def answer_text(answer: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in answer["candidates"][0]["content"]["parts"])


def test_image_answer_has_googles_size_for_the_inputs_shape(fake_gemini: FakeGemini) -> None:
    status, answer = generate(fake_gemini, "any-model", image_request(png((50, 40))))
    assert status == 200
    image = answer_image(answer)
    assert (image.size, image.mode) == ((1152, 896), "RGB")  # 5:4, the documented ratio nearest 50:40
    assert answer["usageMetadata"]["totalTokenCount"] > 0


def test_image_answer_is_cropped_to_the_aspect_ratio_and_an_empty_one_is_none(fake_gemini: FakeGemini) -> None:
    body = {"contents": image_request(png((1500, 300)))["contents"]}
    _, answer = generate(fake_gemini, "x-image", body, version="v1")
    assert answer_image(answer).size == (1536, 672)
    _, answer = generate(fake_gemini, "x-image", image_request(png((400, 100)), aspect_ratio="16:9"))
    assert answer_image(answer).size == (1344, 768)
    body = image_request(png((300, 400)))
    body["generationConfig"]["imageConfig"] = {"aspectRatio": ""}  # proto3: an empty string is "not set"
    assert answer_image(generate(fake_gemini, "x-image", body)[1]).size == (864, 1184)


def test_undocumented_ratio_is_400_in_googles_format(fake_gemini: FakeGemini) -> None:
    status, answer = generate(fake_gemini, "x-image", image_request(png((40, 30)), aspect_ratio="4:1"))
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert answer["error"]["message"].startswith(
        "* GenerateContentRequest.generation_config.image_config.aspect_ratio: aspect_ratio must be one of '1:1'")
    assert [(e["kind"], e["outcome"]) for e in fake_gemini.requests()] == [("image", "400")]


def test_missing_key_is_403_and_wrong_configured_key_400_in_googles_format(fake_gemini: FakeGemini) -> None:
    status, answer = generate(fake_gemini, "m", image_request(png((4, 4))), headers={})
    assert status == 403
    assert answer["error"]["status"] == "PERMISSION_DENIED"
    assert answer["error"]["code"] == 403

    http("POST", f"{fake_gemini.base_url}/_control/config", {"api_key": "good"})
    status, answer = generate(fake_gemini, "m", image_request(png((4, 4))))
    assert status == 400
    assert answer["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert generate(fake_gemini, "m", image_request(png((4, 4))), headers={"x-goog-api-key": "good"})[0] == 200
    assert [e["outcome"] for e in http("GET", f"{fake_gemini.base_url}/_control/requests")[1]] == ["403", "400", "ok"]


def test_qa_and_text_schemas_answer_the_configured_values(fake_gemini: FakeGemini) -> None:
    qa = {"type": "OBJECT", "properties": {"score": {"type": "INTEGER"}, "reason": {"type": "STRING"}},
          "required": ["score", "reason"]}
    text = {"type": "object", "properties": {"has_text": {"type": "boolean"}, "text": {"type": "string"}}}
    assert json.loads(answer_text(generate(fake_gemini, "lite", json_request(qa, "responseSchema"))[1]))["score"] == 85
    assert json.loads(answer_text(generate(fake_gemini, "lite", json_request(text))[1])) == {
        "has_text": False, "text": ""}

    http("POST", f"{fake_gemini.base_url}/_control/config",
         {"qa_score": 30, "text": {"has_text": True, "text": "招牌"}})
    assert json.loads(answer_text(generate(fake_gemini, "lite", json_request(qa, "responseSchema"))[1]))["score"] == 30
    assert json.loads(answer_text(generate(fake_gemini, "lite", json_request(text))[1])) == {
        "has_text": True, "text": "招牌"}


def test_any_other_schema_is_filled_by_type(fake_gemini: FakeGemini) -> None:
    schema = {
        "type": "object",
        "properties": {
            "mood": {"type": "string", "enum": ["calm", "angry"]},
            "count": {"type": "integer", "minimum": 3, "maximum": 9},
            "tags": {"type": "array", "items": {"type": "string"}},
            "owner": {"$ref": "#/$defs/Person"},
            "note": {"type": ["string", "null"]},
        },
        "required": ["mood", "count", "tags", "owner"],
        "$defs": {"Person": {"type": "object", "properties": {"age": {"type": "number"}}, "required": ["age"]}},
    }
    value = json.loads(answer_text(generate(fake_gemini, "lite", json_request(schema))[1]))
    assert value["mood"] == "calm"
    assert 3 <= value["count"] <= 9 and isinstance(value["count"], int)
    assert isinstance(value["tags"], list) and all(isinstance(t, str) for t in value["tags"])
    assert isinstance(value["owner"]["age"], float)
    assert "note" not in value


def test_response_schema_types_are_upper_case_enum_names(fake_gemini: FakeGemini) -> None:
    lower = {"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "string"}}, "required": ["b"]}
    status, answer = generate(fake_gemini, "lite", json_request(lower, "responseSchema"))
    assert status == 400
    assert answer["error"]["message"] == (
        "Invalid value at 'generation_config.response_schema.properties[1].value.type' "
        '(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "string"')
    lower = json_request({"type": "object", "properties": {"b": {"type": "string"}}})
    assert generate(fake_gemini, "lite", lower)[0] == 200


def test_text_enum_answers_the_bare_value(fake_gemini: FakeGemini) -> None:
    body = {"contents": [{"parts": [{"text": "mood?"}]}], "generationConfig": {
        "responseMimeType": "text/x.enum", "responseSchema": {"type": "STRING", "enum": ["calm", "angry"]}}}
    assert answer_text(generate(fake_gemini, "lite", body)[1]) == "calm"


def test_plain_text_is_a_chinese_phrase(fake_gemini: FakeGemini) -> None:
    status, answer = generate(fake_gemini, "lite", {"contents": [{"parts": [{"text": "告诉客户图片修好了"}]}]})
    assert status == 200
    assert "告诉客户图片修好了" in answer_text(answer)


def test_faults_are_fifo_and_filtered_by_model(fake_gemini: FakeGemini) -> None:
    http("POST", f"{fake_gemini.base_url}/_control/faults",
         {"faults": [{"kind": "500"}, {"kind": "503"}], "model": "image"})
    text = {"contents": [{"parts": [{"text": "hi"}]}]}
    assert generate(fake_gemini, "lite", text)[0] == 200
    status, answer = generate(fake_gemini, "flash-image", text)
    assert (status, answer["error"]["status"]) == (500, "INTERNAL")
    assert generate(fake_gemini, "flash-image", text)[0] == 503
    assert generate(fake_gemini, "flash-image", text)[0] == 200
    log = http("GET", f"{fake_gemini.base_url}/_control/requests")[1]
    assert [(e["model"], e["outcome"]) for e in log] == [
        ("lite", "ok"), ("flash-image", "500"), ("flash-image", "503"), ("flash-image", "ok")]
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)


def test_429_carries_retry_info_and_retry_after(fake_gemini: FakeGemini) -> None:
    http("POST", f"{fake_gemini.base_url}/_control/faults", {"faults": [{"kind": "429", "retry_delay_s": 1.5}]})
    request = urllib.request.Request(
        f"{fake_gemini.base_url}/v1beta/models/m:generateContent", method="POST",
        data=json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode(), headers=KEY_HEADER)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 429
    assert caught.value.headers["Retry-After"] == "2"
    error = json.loads(caught.value.read())["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]


def test_safety_and_malformed_answers(fake_gemini: FakeGemini) -> None:
    http("POST", f"{fake_gemini.base_url}/_control/faults",
         {"faults": [{"kind": "safety"}, {"kind": "image_safety"}, {"kind": "malformed"}]})
    body = image_request(png((4, 4)))
    status, answer = generate(fake_gemini, "m-image", body)
    assert (status, answer["promptFeedback"]["blockReason"]) == (200, "SAFETY")
    assert "candidates" not in answer
    _, answer = generate(fake_gemini, "m-image", body)
    assert answer["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    assert "content" not in answer["candidates"][0]
    status, answer = generate(fake_gemini, "m-image", body)
    assert status == 200 and isinstance(answer, str)  # not JSON


def test_bad_requests_get_google_errors(fake_gemini: FakeGemini) -> None:
    assert generate(fake_gemini, "m", {"contents": []})[0] == 400
    status, answer = http("POST", f"{fake_gemini.base_url}/v1beta/models/m:countTokens", {}, headers=KEY_HEADER)
    assert (status, answer["error"]["status"]) == (404, "NOT_FOUND")
    assert http("POST", f"{fake_gemini.base_url}/_control/faults", {"faults": [{"kind": "teapot"}]})[0] == 400


def test_command_line_writes_ready_file_and_log(tmp_path: Path) -> None:
    ready, log = tmp_path / "ready.json", tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "standins.fake_gemini", "--port", str(free_port()), "--ready-file", str(ready),
         "--log", str(log)], cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_for(ready.exists, timeout=15, what="ready file")
        base_url = json.loads(ready.read_text())["base_url"]
        status, _ = http("POST", f"{base_url}/v1beta/models/lite:generateContent",
                         {"contents": [{"parts": [{"text": "你好"}]}]}, headers={**KEY_HEADER, "x-render-key": "r-1"})
        assert status == 200
        [line] = log.read_text(encoding="utf-8").splitlines()
        entry = json.loads(line)
        assert (entry["prompt"], entry["kind"], entry["render_key"], entry["outcome"]) == ("你好", "text", "r-1", "ok")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
