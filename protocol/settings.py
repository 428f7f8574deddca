"""Configuration (SPEC §6): environment variables and `.env`, secrets kept out of logs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
INGRESS_PROCESSES_MAX = 16  # more HTTP processes than cores only adds switching; 16 is past any shop's box


class Settings(BaseSettings):
    """Everything the launcher and the actors are configured with; pickled to every actor."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    DATA_DIR: Path = Field(default=Path("./data"), description="database, images, results, logs")
    DATABASE_URL: str = Field(
        default="", repr=False, description="sqlite:///… or postgresql://… (may hold a password)"
    )
    HTTP_API_HOST: str = "127.0.0.1"
    HTTP_API_PORT: int = Field(default=6060, ge=0, le=65535)
    INGRESS_PROCESSES: int = Field(default=1, ge=1, le=INGRESS_PROCESSES_MAX,
                                   description="HTTP API processes sharing HTTP_API_PORT (SO_REUSEPORT)")
    TIANWANG_API_KEY: SecretStr | None = None
    TIANWANG_CALLBACK_URL: str | None = None
    TIANWANG_CALLBACK_SECRET: SecretStr | None = None
    CONSOLE_SECRET: SecretStr | None = Field(default=None, description="signs console session cookies; "
                                             "default: a random key kept in DATA_DIR/console-secret")
    IM_BRIDGE_URL: str | None = None
    GEMINI_API_KEY: SecretStr | None = None
    GEMINI_BASE_URL: str | None = None
    GEMINI_IMAGE_MODEL: str = "gemini-3.1-flash-image"
    GEMINI_TEXT_MODEL: str = "gemini-3.5-flash-lite"
    TUHUI_DISPATCH_URL: str | None = None
    TUHUI_DISPATCH_KEY: SecretStr | None = None
    WECHAT_WEBHOOK: SecretStr | None = None
    SMTP_HOST: str | None = None
    SMTP_PORT: int = 587
    SMTP_USER: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    SMTP_FROM: str | None = None
    IMAGE_MODULE_ENABLED: bool = True
    SHOP_TIMEZONE: str = "Asia/Shanghai"
    RENDER_CONCURRENCY: int = Field(default=4, ge=1)
    RENDER_MAX_ATTEMPTS: int = Field(default=3, ge=1)
    QA_THRESHOLD: int = Field(default=70, ge=0, le=100)
    PUBLIC_BASE_URL: str | None = None
    FETCH_ALLOW_HOSTS: str = ""
    CONVERSATIONS_MAX_LIVE: int = Field(default=200, ge=1)
    CONVERSATION_IDLE_S: float = Field(default=600, gt=0)
    TAKEOVER_MINUTES: float = Field(default=30, ge=0)
    DEBOUNCE_S: float = Field(default=3, ge=0)
    CUSTOMER_RATE_PER_MIN: float = Field(default=30, gt=0, le=6000, description="a customer's messages taken "
                                         "a minute after a burst; more wait, stored, and are answered later")
    CUSTOMER_BURST: int = Field(default=20, ge=1, le=1000, description="messages a customer may send at once "
                                "before CUSTOMER_RATE_PER_MIN applies")
    ASSET_DIR: Path | None = Field(default=None, description="the shop's image archive for find-image; "
                                   "default DATA_DIR/assets")
    RETENTION_DAYS: float = Field(default=90, gt=0, description="photos and results of a finished job are deleted "
                                  "this long after it finished (its rows and history stay)")
    MESSAGE_RETENTION_DAYS: float = Field(default=180, gt=0, description="customers' messages are deleted this "
                                          "long after they came")
    COMPACTION_DAYS: float = Field(default=7, gt=0, description="delivered outbox rows, consumed events, login "
                                   "failures and unreferenced files are removed this long after they settled")

    # Operational knobs beyond SPEC §6, named in the README.
    THESPIAN_ADMIN_PORT: int = Field(default=0, ge=0, le=65535, description="actor system admin port; 0 = any free")
    THESPIAN_IDLE_SOCKET_MS: int = Field(default=20, ge=1, description="idle actor connections close after this")
    IM_SIMULATOR_WS_PORT: int = Field(default=6070, ge=0, le=65535)
    IM_SIMULATOR_HTTP_PORT: int = Field(default=6071, ge=0, le=65535)
    DISPATCH_STANDIN_PORT: int = Field(default=6073, ge=0, le=65535, description="the dispatch stand-in, when it runs")
    TASK_RETRY_BASE_S: float = Field(default=5.0, gt=0, description="first retry delay of a failed action")
    CALLBACK_RETRY_MAX_S: float = Field(default=60.0, gt=0, description="longest pause between callback tries")
    SWEEP_INTERVAL_S: float = Field(default=5.0, gt=0, description="how often lost in-flight work is re-driven")
    GEMINI_TIMEOUT_S: float = Field(default=90.0, gt=0, description="limit on every Gemini call (the SDK has none)")
    PHRASE_REPLIES: bool = Field(default=True, description="with GEMINI_API_KEY: the text model words replies")
    PHRASE_TIME_LIMIT_S: float = Field(default=4.0, gt=0, description="after this, the fixed reply goes out")
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: Literal["text", "json"] = Field(default="text", description="json: one JSON object a line, "
                                                "with the task, customer, job or send id it concerns")

    @model_validator(mode="after")
    def _defaults_and_guards(self) -> Settings:
        self.DATA_DIR = self.DATA_DIR.resolve()
        if not self.DATABASE_URL:
            self.DATABASE_URL = f"sqlite:///{self.DATA_DIR / 'shop.db'}"
        if self.INGRESS_PROCESSES > 1 and self.HTTP_API_PORT == 0:
            raise ValueError(f"INGRESS_PROCESSES={self.INGRESS_PROCESSES} needs a fixed HTTP_API_PORT: with 0 each "
                             f"ingress process would listen on a different free port")
        if self.HTTP_API_HOST not in LOOPBACK_HOSTS and self.TIANWANG_API_KEY is None:
            raise ValueError(
                f"HTTP_API_HOST={self.HTTP_API_HOST} is not loopback: set TIANWANG_API_KEY to serve off this host"
            )
        return self

    @property
    def api_base_url(self) -> str:
        """The ingress's own URL, as a local client reaches it."""
        host = "127.0.0.1" if self.HTTP_API_HOST in ("0.0.0.0", "::") else self.HTTP_API_HOST
        return f"http://{host}:{self.HTTP_API_PORT}"

    @property
    def public_base_url(self) -> str:
        """Where the IM bridge and customers fetch result files: PUBLIC_BASE_URL, else the ingress's own URL."""
        return (self.PUBLIC_BASE_URL or self.api_base_url).rstrip("/")

    @property
    def fetch_allow_hosts(self) -> frozenset[str]:
        """FETCH_ALLOW_HOSTS as a set of host or host:port entries."""
        return frozenset(h.strip() for h in self.FETCH_ALLOW_HOSTS.split(",") if h.strip())

    @property
    def asset_dir(self) -> Path:
        """Where the shop keeps its own images for find-image: ASSET_DIR, else DATA_DIR/assets."""
        return self.ASSET_DIR or self.DATA_DIR / "assets"

    def defaults_in_use(self) -> list[str]:
        """Human-readable list of the parts running on embedded defaults."""
        parts = []
        if self.DATABASE_URL.startswith("sqlite"):
            parts.append("database: SQLite under DATA_DIR")
        if not self.IM_BRIDGE_URL:
            parts.append("IM bridge: built-in simulator")
        if self.GEMINI_API_KEY is None:
            parts.append("renderer: every step local (Pillow, OpenCV, U²-Net, vtracer) and offline OCR "
                         "(no GEMINI_API_KEY)")
        if not self.TUHUI_DISPATCH_URL:
            parts.append("designer dispatch: built-in stand-in")
        if self.WECHAT_WEBHOOK is None:
            parts.append("staff notifications: log only")
        if not self.SMTP_HOST:
            parts.append("e-mail: files under DATA_DIR/outbox-mail")
        if not self.TIANWANG_CALLBACK_URL:
            parts.append("Tianwang callbacks: off (no TIANWANG_CALLBACK_URL)")
        return parts
