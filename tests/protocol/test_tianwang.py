"""Tianwang task bodies (protocol/tianwang.py, SPEC §1) and configuration (protocol/settings.py, SPEC §6).

What an integrator posting tasks sees: the SPEC example is accepted with its defaults, and every kind
of bad body is refused with an error that names the offending field. What an operator sees of the
configuration: SPEC §6 defaults, the refusal to serve off loopback without a key, and secrets that
never show up in a printed or serialised configuration.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from protocol.settings import Settings
from protocol.tianwang import (
    Action,
    ActionType,
    Callback,
    CancelIn,
    EventIn,
    Priority,
    TaskIn,
    TaskStatus,
    TriggerType,
)

SPEC_EXAMPLE: dict[str, Any] = {
    "task_id": "TASK_20260226_001",
    "type": "send_file_after_reply",
    "customer": {"name": "小明", "id": "customer_123"},
    "trigger": {"type": "customer_reply", "keyword": "好的"},
    "action": {"type": "send_file", "file_url": "https://xxx.com/file.zip", "message": "这是您要的文件"},
    "priority": "normal",
    "timeout_hours": 24,
    "created_by": "设计师 lz",
}


def body(**changes: Any) -> dict[str, Any]:
    """The SPEC example with top-level keys replaced (None deletes the key)."""
    b = copy.deepcopy(SPEC_EXAMPLE)
    for key, value in changes.items():
        if value is None:
            b.pop(key, None)
        else:
            b[key] = value
    return b


def refused(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate data as a task body, expecting refusal; the errors."""
    with pytest.raises(ValidationError) as info:
        TaskIn.model_validate(data)
    return info.value.errors()


def names(errors: list[dict[str, Any]]) -> list[str]:
    """Each error as 'dotted.location: message', as an API answer would show it."""
    return [".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in errors]


def mentions(errors: list[dict[str, Any]], field: str) -> bool:
    """Whether some error names field, in its location or its message."""
    return any(field in line for line in names(errors))


# --------------------------------------------------------------------------------------------
# task bodies


class TestValidBodies:
    """Bodies Tianwang is entitled to send."""

    def test_spec_example_parses(self) -> None:
        task = TaskIn.model_validate(SPEC_EXAMPLE)
        assert task.task_id == "TASK_20260226_001"
        assert task.customer.id == "customer_123" and task.customer.name == "小明"
        assert task.trigger.type is TriggerType.CUSTOMER_REPLY and task.trigger.keyword == "好的"
        assert task.action.type is ActionType.SEND_FILE
        assert task.action.file_url == "https://xxx.com/file.zip"
        assert task.action.message == "这是您要的文件"
        assert task.created_by == "设计师 lz"

    def test_defaults_priority_normal_and_timeout_24(self) -> None:
        task = TaskIn.model_validate(body(priority=None, timeout_hours=None, created_by=None))
        assert task.priority is Priority.NORMAL
        assert task.timeout_hours == 24
        assert task.created_by == ""

    def test_defaults_equal_the_explicit_spec_values(self) -> None:
        implicit = TaskIn.model_validate(body(priority=None, timeout_hours=None))
        explicit = TaskIn.model_validate(SPEC_EXAMPLE)
        assert implicit == explicit

    @pytest.mark.parametrize("priority", ["urgent", "high", "normal"])
    def test_every_priority_is_accepted(self, priority: str) -> None:
        assert TaskIn.model_validate(body(priority=priority)).priority.value == priority

    @pytest.mark.parametrize(
        "trigger",
        [
            {"type": "customer_reply", "keyword": "好的"},
            {"type": "customer_keyword", "keywords": ["好的", "可以"]},
            {"type": "customer_keyword", "keyword": "可以"},
            {"type": "customer_payment"},
            {"type": "customer_order"},
            {"type": "time_reach", "time": "2026-02-27 09:00:00"},
            {"type": "custom_event", "event": "design_done"},
        ],
    )
    def test_every_trigger_type_is_accepted(self, trigger: dict[str, Any]) -> None:
        assert TaskIn.model_validate(body(trigger=trigger)).trigger.type.value == trigger["type"]

    @pytest.mark.parametrize(
        "action",
        [
            {"type": "send_message", "message": "您好"},
            {"type": "send_file", "file_url": "http://files.example/a.zip"},
            {"type": "send_link", "url": "https://shop.example/item/1", "title": "商品"},
            {"type": "send_link", "link_url": "https://shop.example/item/1"},
        ],
    )
    def test_every_action_type_is_accepted(self, action: dict[str, Any]) -> None:
        assert TaskIn.model_validate(body(action=action)).action.type.value == action["type"]

    def test_surrounding_whitespace_is_stripped(self) -> None:
        task = TaskIn.model_validate(body(trigger={"type": "customer_reply", "keyword": "  好的 "}))
        assert task.trigger.keyword == "好的"

    def test_customer_keyword_lists_every_keyword(self) -> None:
        task = TaskIn.model_validate(
            body(trigger={"type": "customer_keyword", "keywords": ["好的", "可以"], "keyword": "行"})
        )
        assert sorted(task.trigger.all_keywords()) == sorted(["好的", "可以", "行"])

    def test_body_round_trips_through_json(self) -> None:
        task = TaskIn.model_validate(SPEC_EXAMPLE)
        assert TaskIn.model_validate_json(task.model_dump_json()) == task


class TestRefusedBodies:
    """Each kind of bad body is refused, and the error says which field is wrong."""

    def test_unknown_trigger_type(self) -> None:
        errors = refused(body(trigger={"type": "customer_sneezes", "keyword": "x"}))
        assert any(e["loc"] == ("trigger", "type") for e in errors), names(errors)

    def test_unknown_action_type(self) -> None:
        errors = refused(body(action={"type": "send_fax", "message": "x"}))
        assert any(e["loc"] == ("action", "type") for e in errors), names(errors)

    def test_unknown_priority(self) -> None:
        errors = refused(body(priority="critical"))
        assert any(e["loc"] == ("priority",) for e in errors), names(errors)

    def test_missing_customer(self) -> None:
        errors = refused(body(customer=None))
        assert any(e["loc"] == ("customer",) and e["type"] == "missing" for e in errors), names(errors)

    def test_customer_without_id(self) -> None:
        errors = refused(body(customer={"name": "小明"}))
        assert any(e["loc"] == ("customer", "id") for e in errors), names(errors)

    @pytest.mark.parametrize(
        "trigger", [{"type": "customer_reply"}, {"type": "customer_reply", "keyword": "  "}]
    )
    def test_customer_reply_without_keyword(self, trigger: dict[str, Any]) -> None:
        errors = refused(body(trigger=trigger))
        assert mentions(errors, "trigger") and mentions(errors, "keyword"), names(errors)

    def test_customer_keyword_without_any_keyword(self) -> None:
        errors = refused(body(trigger={"type": "customer_keyword"}))
        assert mentions(errors, "trigger") and mentions(errors, "keyword"), names(errors)

    @pytest.mark.parametrize(
        "time",
        ["2026-02-27", "2026/02/27 09:00:00", "2026-02-27T09:00:00", "2026-02-30 09:00:00", "明天九点",
         "0001-01-01 00:00:00", "9999-12-31 23:59:59"],
    )
    def test_time_reach_with_bad_time_format(self, time: str) -> None:
        errors = refused(body(trigger={"type": "time_reach", "time": time}))
        assert mentions(errors, "trigger") and mentions(errors, "time"), names(errors)

    def test_time_reach_without_time(self) -> None:
        errors = refused(body(trigger={"type": "time_reach"}))
        assert mentions(errors, "trigger.time"), names(errors)

    def test_custom_event_without_event(self) -> None:
        errors = refused(body(trigger={"type": "custom_event"}))
        assert mentions(errors, "trigger.event"), names(errors)

    def test_send_file_without_file_url(self) -> None:
        errors = refused(body(action={"type": "send_file", "message": "这是您要的文件"}))
        assert mentions(errors, "action") and mentions(errors, "file_url"), names(errors)

    @pytest.mark.parametrize(
        "url", ["ftp://xxx.com/file.zip", "file:///etc/passwd", "xxx.com/file.zip", "javascript:x"]
    )
    def test_send_file_with_non_http_url(self, url: str) -> None:
        errors = refused(body(action={"type": "send_file", "file_url": url}))
        assert any(e["loc"] == ("action", "file_url") for e in errors), names(errors)

    def test_send_link_with_non_http_url(self) -> None:
        errors = refused(body(action={"type": "send_link", "url": "ftp://x"}))
        assert any(e["loc"] == ("action", "url") for e in errors), names(errors)

    def test_send_message_without_message(self) -> None:
        errors = refused(body(action={"type": "send_message"}))
        assert mentions(errors, "action.message"), names(errors)

    def test_send_link_without_url(self) -> None:
        errors = refused(body(action={"type": "send_link", "message": "看看"}))
        assert mentions(errors, "action") and mentions(errors, "url"), names(errors)

    def test_extra_unknown_top_level_field(self) -> None:
        errors = refused(body(callback_url="https://evil.example"))
        assert any(e["loc"] == ("callback_url",) and e["type"] == "extra_forbidden" for e in errors), names(
            errors
        )

    @pytest.mark.parametrize(
        ("part", "loc"),
        [("customer", ("customer", "vip")), ("trigger", ("trigger", "vip")), ("action", ("action", "vip"))],
    )
    def test_extra_unknown_nested_field(self, part: str, loc: tuple[str, ...]) -> None:
        data = body()
        data[part] = {**data[part], "vip": True}
        errors = refused(data)
        assert any(e["loc"] == loc and e["type"] == "extra_forbidden" for e in errors), names(errors)

    @pytest.mark.parametrize("hours", ["abc", -1, 0, -0.5, None, [24], 24 * 365 + 1])
    def test_bad_timeout_hours(self, hours: Any) -> None:
        data = body()
        data["timeout_hours"] = hours
        errors = refused(data)
        assert any(e["loc"] == ("timeout_hours",) for e in errors), names(errors)

    @pytest.mark.parametrize("task_id", ["", "has space", "中文", "a/b", "x" * 129])
    def test_bad_task_id(self, task_id: str) -> None:
        errors = refused(body(task_id=task_id) if task_id else {**body(), "task_id": ""})
        assert any(e["loc"] == ("task_id",) for e in errors), names(errors)

    @pytest.mark.parametrize("field", ["task_id", "type", "trigger", "action"])
    def test_missing_required_field(self, field: str) -> None:
        errors = refused(body(**{field: None}))
        assert any(e["loc"] == (field,) and e["type"] == "missing" for e in errors), names(errors)

    def test_wrong_type_for_customer(self) -> None:
        errors = refused(body(customer="customer_123"))
        assert any(e["loc"][0] == "customer" for e in errors), names(errors)

    @settings(max_examples=60, deadline=None, database=None)
    @given(word=st.text(min_size=1, max_size=20))
    def test_any_unknown_trigger_action_or_priority_is_refused(self, word: str) -> None:
        if word.strip() not in {t.value for t in TriggerType}:
            errors = refused(body(trigger={"type": word, "keyword": "x"}))
            assert any(e["loc"] == ("trigger", "type") for e in errors)
        if word.strip() not in {a.value for a in ActionType}:
            errors = refused(body(action={"type": word, "message": "x"}))
            assert any(e["loc"] == ("action", "type") for e in errors)
        if word.strip() not in {p.value for p in Priority}:
            errors = refused(body(priority=word))
            assert any(e["loc"] == ("priority",) for e in errors)


class TestOtherBodies:
    """Cancel and event bodies, and the callback Tianwang receives."""

    def test_cancel_body(self) -> None:
        assert CancelIn.model_validate({"task_id": "T1"}).reason == ""
        with pytest.raises(ValidationError):
            CancelIn.model_validate({"reason": "no id"})
        with pytest.raises(ValidationError):
            CancelIn.model_validate({"task_id": "T1", "force": True})

    def test_event_body_customer_is_optional(self) -> None:
        event = EventIn.model_validate({"event": "design_done"})
        assert event.customer_id is None and event.data == {}
        with pytest.raises(ValidationError):
            EventIn.model_validate({"event": ""})

    def test_callback_carries_spec_fields(self) -> None:
        cb = Callback(task_id="T1", status="completed", timestamp="2026-02-27T09:00:00.000+08:00")
        assert cb.model_dump(mode="json") == {
            "task_id": "T1",
            "status": "completed",
            "error": None,
            "timestamp": "2026-02-27T09:00:00.000+08:00",
        }
        with pytest.raises(ValidationError):
            Callback(task_id="T1", status="exploded", timestamp="x")

    def test_send_file_message_is_optional(self) -> None:
        assert Action.model_validate({"type": "send_file", "file_url": "https://x/y"}).message is None

    def test_task_statuses_are_the_spec_ones(self) -> None:
        assert {s.value for s in TaskStatus} == {
            "pending",
            "waiting",
            "running",
            "completed",
            "failed",
            "cancelled",
            "timeout",
        }


# --------------------------------------------------------------------------------------------
# settings

SECRET_FIELDS = sorted(name for name, f in Settings.model_fields.items() if "SecretStr" in repr(f.annotation))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No configuration in the environment, and the working directory an empty folder."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TestSettings:
    """SPEC §6 configuration."""

    def test_secret_fields_are_the_expected_ones(self) -> None:
        assert {
            "TIANWANG_API_KEY",
            "TIANWANG_CALLBACK_SECRET",
            "GEMINI_API_KEY",
            "TUHUI_DISPATCH_KEY",
            "WECHAT_WEBHOOK",
            "SMTP_PASSWORD",
        } <= set(SECRET_FIELDS)

    def test_spec_defaults(self, clean_env: Path) -> None:
        s = Settings(_env_file=None)
        data_dir = s.DATA_DIR
        assert data_dir == (clean_env / "data").resolve()
        assert s.HTTP_API_HOST == "127.0.0.1"
        assert s.HTTP_API_PORT == 6060
        for name in (
            "TIANWANG_API_KEY",
            "TIANWANG_CALLBACK_URL",
            "TIANWANG_CALLBACK_SECRET",
            "IM_BRIDGE_URL",
            "GEMINI_API_KEY",
            "GEMINI_BASE_URL",
            "TUHUI_DISPATCH_URL",
            "TUHUI_DISPATCH_KEY",
            "WECHAT_WEBHOOK",
            "SMTP_HOST",
            "SMTP_USER",
            "SMTP_PASSWORD",
            "SMTP_FROM",
            "PUBLIC_BASE_URL",
        ):
            assert getattr(s, name) is None, name
        assert s.IMAGE_MODULE_ENABLED is True
        assert s.SHOP_TIMEZONE == "Asia/Shanghai"
        assert s.GEMINI_IMAGE_MODEL == "gemini-3.1-flash-image"
        assert s.GEMINI_TEXT_MODEL == "gemini-3.5-flash-lite"
        assert (s.RENDER_CONCURRENCY, s.RENDER_MAX_ATTEMPTS, s.QA_THRESHOLD) == (4, 3, 70)
        assert s.FETCH_ALLOW_HOSTS == ""
        assert (s.CONVERSATIONS_MAX_LIVE, s.CONVERSATION_IDLE_S) == (200, 600)
        assert (s.TAKEOVER_MINUTES, s.DEBOUNCE_S) == (30, 3)

    def test_database_url_defaults_to_sqlite_under_data_dir(self, clean_env: Path) -> None:
        url = Settings(_env_file=None).DATABASE_URL
        assert url == f"sqlite:///{(clean_env / 'data').resolve() / 'shop.db'}"

    def test_database_url_follows_a_custom_data_dir(self, clean_env: Path) -> None:
        url = Settings(_env_file=None, DATA_DIR=clean_env / "elsewhere").DATABASE_URL
        assert url == f"sqlite:///{clean_env / 'elsewhere' / 'shop.db'}"

    def test_explicit_database_url_is_kept(self, clean_env: Path) -> None:
        given_url = "postgresql://shop@db.internal:5432/shop"
        kept = Settings(_env_file=None, DATABASE_URL=given_url).DATABASE_URL
        assert kept == given_url

    def test_values_come_from_the_environment(self, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTP_API_PORT", "7000")
        monkeypatch.setenv("DEBOUNCE_S", "1.5")
        monkeypatch.setenv("IMAGE_MODULE_ENABLED", "false")
        s = Settings(_env_file=None)
        assert (s.HTTP_API_PORT, s.DEBOUNCE_S, s.IMAGE_MODULE_ENABLED) == (7000, 1.5, False)

    def test_values_come_from_a_dot_env_file(self, clean_env: Path) -> None:
        (clean_env / "custom.env").write_text("HTTP_API_PORT=7001\nSHOP_TIMEZONE=UTC\n")
        s = Settings(_env_file=clean_env / "custom.env")
        assert (s.HTTP_API_PORT, s.SHOP_TIMEZONE) == (7001, "UTC")

    def test_off_loopback_without_api_key_is_refused(self, clean_env: Path) -> None:
        with pytest.raises(ValidationError) as info:
            Settings(_env_file=None, HTTP_API_HOST="0.0.0.0")
        assert "TIANWANG_API_KEY" in str(info.value)

    def test_off_loopback_from_the_environment_without_api_key_is_refused(
        self, clean_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HTTP_API_HOST", "0.0.0.0")
        with pytest.raises(ValidationError):
            Settings(_env_file=None)

    def test_off_loopback_with_api_key_is_accepted(self, clean_env: Path) -> None:
        s = Settings(_env_file=None, HTTP_API_HOST="0.0.0.0", TIANWANG_API_KEY="k-123")
        assert s.HTTP_API_HOST == "0.0.0.0"
        assert s.TIANWANG_API_KEY is not None and s.TIANWANG_API_KEY.get_secret_value() == "k-123"

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
    def test_loopback_needs_no_key(self, clean_env: Path, host: str) -> None:
        assert Settings(_env_file=None, HTTP_API_HOST=host).TIANWANG_API_KEY is None

    @pytest.mark.parametrize(
        ("field", "value"),
        [("HTTP_API_PORT", 70000), ("QA_THRESHOLD", 101), ("RENDER_CONCURRENCY", 0), ("DEBOUNCE_S", -1)],
    )
    def test_out_of_range_values_are_refused(self, clean_env: Path, field: str, value: Any) -> None:
        with pytest.raises(ValidationError) as info:
            Settings(_env_file=None, **{field: value})
        assert field in str(info.value)

    @pytest.fixture
    def secret_settings(
        self, clean_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> tuple[Settings, dict[str, str]]:
        secrets = {name: f"s3cr3t-{name.lower()}-value" for name in SECRET_FIELDS}
        for name, value in secrets.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("HTTP_API_HOST", "0.0.0.0")
        return Settings(_env_file=None), secrets

    def test_secrets_are_usable(self, secret_settings: tuple[Settings, dict[str, str]]) -> None:
        s, secrets = secret_settings
        for name, value in secrets.items():
            field = getattr(s, name)
            assert isinstance(field, SecretStr)
            assert field.get_secret_value() == value

    def test_secrets_never_appear_in_repr_or_str(
        self, secret_settings: tuple[Settings, dict[str, str]]
    ) -> None:
        s, secrets = secret_settings
        shown = repr(s) + str(s) + repr(s.model_dump()) + str(s.defaults_in_use())
        for value in secrets.values():
            assert value not in shown

    def test_secrets_never_appear_in_json(self, secret_settings: tuple[Settings, dict[str, str]]) -> None:
        s, secrets = secret_settings
        dumped = s.model_dump_json() + str(s.model_dump(mode="json"))
        for value in secrets.values():
            assert value not in dumped

    def test_secrets_survive_pickling_to_actors(
        self, secret_settings: tuple[Settings, dict[str, str]]
    ) -> None:
        s, secrets = secret_settings
        copy_ = pickle.loads(pickle.dumps(s))
        for name, value in secrets.items():
            assert getattr(copy_, name).get_secret_value() == value

    def test_defaults_in_use_names_the_embedded_parts(self, clean_env: Path) -> None:
        parts = " | ".join(Settings(_env_file=None).defaults_in_use())
        for word in ("SQLite", "simulator", "renderer", "notifications", "e-mail"):
            assert word in parts

    def test_api_base_url_is_reachable_locally(self, clean_env: Path) -> None:
        assert Settings(_env_file=None).api_base_url == "http://127.0.0.1:6060"
        wide = Settings(_env_file=None, HTTP_API_HOST="0.0.0.0", TIANWANG_API_KEY="k")
        assert wide.api_base_url == "http://127.0.0.1:6060"
