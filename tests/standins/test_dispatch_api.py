"""The designer dispatch stand-in spoken to over plain HTTP, restarted on its state file, and run as a command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from standins.dispatch_api import DispatchStandin
from tests.harness import REPO, free_port, http, wait_for

pytestmark = pytest.mark.timeout(30)

KEY = "tuhui-secret-key-0123"
AUTH = {"X-API-Key": KEY}
TASK = {"task_name": "图片处理-_123", "description": "原因:图片含文字\n[key:h-1]", "task_type": "image_process",
        "priority": 2}


@pytest.fixture(scope="module")
def server() -> Iterator[DispatchStandin]:
    with DispatchStandin(port=free_port(), api_key=KEY) as standin:
        yield standin


@pytest.fixture()
def api(server: DispatchStandin) -> DispatchStandin:
    assert http("POST", f"{server.control_url}/reset") == (200, {"success": True})
    return server


def call(api: DispatchStandin, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    return http(method, api.base_url + path, body, headers={**AUTH, **headers})


def create(api: DispatchStandin, key: str | None = None, **fields: Any) -> str:
    status, answer = call(api, "POST", "/tasks", {**TASK, **fields}, **({"Idempotency-Key": key} if key else {}))
    assert status == 200, answer
    assert re.fullmatch(r"[0-9a-f]{8}", answer["task_id"])
    return str(answer["task_id"])


def test_every_api_call_needs_the_key(api: DispatchStandin) -> None:
    assert http("GET", f"{api.base_url}/online/designers") == (401, {"success": False,
                                                                   "error": "missing X-API-Key header"})
    status, answer = http("POST", f"{api.base_url}/tasks", TASK, headers={"X-API-Key": "wrong"})
    assert status == 401 and answer["error"] == "invalid API key"
    assert call(api, "GET", "/online/designers") == (200, ["橘子", "婷婷"])
    assert http("GET", f"{api.control_url}/tasks") == (200, [])  # the control API needs no key: nothing was made
    assert [(r["method"], r["path"], r["status"]) for r in api.requests()] == [
        ("GET", "/online/designers", 401), ("POST", "/tasks", 401), ("GET", "/online/designers", 200)]
    assert all(KEY not in json.dumps(r) for r in api.requests())


def test_same_idempotency_key_gives_the_same_task(api: DispatchStandin) -> None:
    first = create(api, key="h-1")
    assert create(api, key="h-1", description="a retry with other words") == first
    second = create(api, key="h-2")
    unkeyed = [create(api), create(api)]
    assert len({first, second, *unkeyed}) == 4
    tasks = http("GET", f"{api.control_url}/tasks")[1]
    assert [t["key"] for t in tasks] == ["h-1", "h-2", None, None]
    assert tasks[0]["description"] == TASK["description"]  # the retry changed nothing
    status, queue = call(api, "GET", "/dispatch/queue")
    assert status == 200 and queue["pending_tasks"]["count"] == 4
    assert queue["pending_tasks"]["tasks"][0] == {"task_id": first, "task_name": "图片处理-_123",
                                                  "description": TASK["description"], "key": "h-1"}
    assert [r["idempotency_key"] for r in api.requests()][:2] == ["h-1", "h-1"]


def test_assign_refuses_offline_and_unknown_designers(api: DispatchStandin) -> None:
    task_id = create(api, key="h-1")
    api.set_designers(offline=["婷婷"])
    status, answer = call(api, "POST", f"/tasks/{task_id}/assign", {"designer_name": "婷婷", "notes": "含文字"})
    assert (status, answer) == (400, {"success": False, "error": "designer 婷婷 is offline"})
    status, answer = call(api, "POST", f"/tasks/{task_id}/assign", {"designer_name": "小王", "notes": ""})
    assert status == 400 and "unknown designer" in answer["error"]
    status, answer = call(api, "POST", "/tasks/00000000/assign", {"designer_name": "橘子", "notes": ""})
    assert status == 404 and answer["success"] is False
    assert call(api, "GET", f"/tasks/{task_id}")[1]["status"] == "pending"

    assert call(api, "POST", f"/tasks/{task_id}/assign", {"designer_name": "橘子", "notes": "含文字"}) == \
        (200, {"success": True})
    status, task = call(api, "GET", f"/tasks/{task_id}")
    assert status == 200
    assert {k: task[k] for k in ("task_id", "status", "assigned_to", "notes", "key", "completed_at")} == {
        "task_id": task_id, "status": "assigned", "assigned_to": "橘子", "notes": "含文字", "key": "h-1",
        "completed_at": None}
    assert call(api, "GET", "/dispatch/queue")[1]["pending_tasks"] == {"count": 0, "tasks": []}


def test_a_designer_completes_a_task(api: DispatchStandin) -> None:
    task_id = create(api, key="h-1")
    status, answer = call(api, "POST", f"/tasks/{task_id}/complete", {"notes": "x"})
    assert status == 409 and "not assigned" in answer["error"]
    call(api, "POST", f"/tasks/{task_id}/assign", {"designer_name": "橘子", "notes": "含文字"})
    assert call(api, "POST", f"/tasks/{task_id}/complete", {"notes": "已处理,发给客户了"}) == (200, {"success": True})
    task = call(api, "GET", f"/tasks/{task_id}")[1]
    assert (task["status"], task["notes"]) == ("completed", "已处理,发给客户了") and task["completed_at"]
    status, answer = call(api, "POST", f"/tasks/{task_id}/assign", {"designer_name": "婷婷", "notes": ""})
    assert status == 409

    other = create(api, key="h-2")
    call(api, "POST", f"/tasks/{other}/assign", {"designer_name": "婷婷", "notes": ""})
    assert http("POST", f"{api.control_url}/tasks/{other}/complete", {"notes": "婷婷做完了"}) == \
        (200, {"success": True})
    assert call(api, "GET", f"/tasks/{other}")[1]["status"] == "completed"


def test_control_sets_who_is_online_and_the_suggestion_follows(api: DispatchStandin) -> None:
    queue = call(api, "GET", "/dispatch/queue")[1]
    assert queue["online_designers"] == {"count": 2, "designers": ["橘子", "婷婷"]}
    assert queue["suggestion"] == "婷婷"  # no open tasks either: ties go by name
    task_id = create(api, key="h-1")
    call(api, "POST", f"/tasks/{task_id}/assign", {"designer_name": "婷婷", "notes": ""})
    assert call(api, "GET", "/dispatch/queue")[1]["suggestion"] == "橘子"  # the one with fewer open tasks

    status, answer = http("POST", f"{api.control_url}/designers", {"online": ["小王"], "offline": ["橘子", "婷婷"]})
    assert status == 200 and answer["online"] == ["小王"]
    assert answer["designers"] == {"橘子": False, "婷婷": False, "小王": True}
    assert call(api, "GET", "/online/designers") == (200, ["小王"])
    http("POST", f"{api.control_url}/designers", {"offline": ["小王"]})
    queue = call(api, "GET", "/dispatch/queue")[1]
    assert queue["online_designers"] == {"count": 0, "designers": []} and queue["suggestion"] is None


def test_answers_are_always_json(api: DispatchStandin) -> None:
    status, answer = call(api, "POST", "/tasks", {"task_name": "", "priority": "high"})
    assert status == 400 and "task_name" in answer["error"] and "priority" in answer["error"]
    status, answer = call(api, "POST", "/tasks", {"task_name": "x", "extra": 1})
    assert status == 400 and "extra" in answer["error"]
    assert call(api, "GET", "/nowhere")[0] == 404 and call(api, "GET", "/nowhere")[1]["success"] is False
    status, answer = call(api, "DELETE", "/tasks")
    assert status == 405 and answer["success"] is False
    status, answer = call(api, "GET", "/tasks/abcdef12")
    assert status == 404 and answer == {"success": False, "error": "task abcdef12 not found"}


def test_state_file_keeps_tasks_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "dispatch-standin.json"
    with DispatchStandin(port=free_port(), state_path=state) as first:
        task_id = create(first, key="h-1")
        call(first, "POST", f"/tasks/{task_id}/assign", {"designer_name": "橘子", "notes": "含文字"})
        pending = create(first, key="h-2")
        first.set_designers(offline=["婷婷"])
    with DispatchStandin(port=free_port(), state_path=state) as second:
        task = call(second, "GET", f"/tasks/{task_id}")[1]
        assert (task["status"], task["assigned_to"], task["key"]) == ("assigned", "橘子", "h-1")
        assert create(second, key="h-2") == pending  # idempotency survives the restart too
        assert call(second, "GET", "/online/designers")[1] == ["橘子"]
        assert [t["task_id"] for t in second.tasks()] == [task_id, pending]


def test_unreadable_state_file_is_moved_aside(tmp_path: Path) -> None:
    state = tmp_path / "dispatch-standin.json"
    state.write_text("{not json")
    with DispatchStandin(port=free_port(), state_path=state) as standin:
        assert standin.tasks() == [] and call(standin, "GET", "/online/designers")[1] == ["橘子", "婷婷"]
    assert (tmp_path / "dispatch-standin.json.corrupt").read_text() == "{not json"


def test_runs_as_a_command_with_a_ready_file(tmp_path: Path) -> None:
    ready, log = tmp_path / "ready.json", tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "standins.dispatch_api", "--port", "0", "--key", KEY, "--designers", "阿明,婷婷",
         "--state-path", str(tmp_path / "state.json"), "--log", str(log), "--ready-file", str(ready)],
        cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        urls = json.loads(wait_for(lambda: ready.exists() and ready.read_text(), 15, what="ready file"))
        assert http("GET", f"{urls['url']}/online/designers", headers=AUTH) == (200, ["阿明", "婷婷"])
        status, answer = http("POST", f"{urls['url']}/tasks", TASK, headers={**AUTH, "Idempotency-Key": "h-1"})
        assert status == 200
        assert http("GET", f"{urls['control_url']}/requests")[1][0]["status"] == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert [json.loads(line)["path"] for line in log.read_text().splitlines()] == ["/online/designers", "/tasks"]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert [t["task_id"] for t in saved["tasks"]] == [answer["task_id"]]
