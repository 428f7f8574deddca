"""Gateway: the IM bridge link, in its own loop thread; routes stored messages, reports settled sends."""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorAddress

from actors.base import ServiceActor
from actors.bridge import ThreadBridge
from integrations.im_bridge import BridgeClient
from protocol.messages import InboundItem, RouteMessages, SendNudge, SendOutcome


class Gateway(ServiceActor):
    """A leaf actor owning the WebSocket client thread."""

    kind = "gateway"
    acknowledges = True

    def on_configure(self) -> None:
        assert self.settings is not None
        if not self.settings.IM_BRIDGE_URL:
            self.log.error("gateway: IM_BRIDGE_URL is not set; the launcher should have started the simulator")
            return
        self.bridge = ThreadBridge("gateway")
        self.client = BridgeClient(self.settings.IM_BRIDGE_URL, self.bridge.post)
        self.bridge.start(self.client.run)
        self.every(self.settings.SWEEP_INTERVAL_S, "sweep")

    def on_bridge_items(self, items: list[Any]) -> None:
        assert self.book is not None
        routes: list[InboundItem] = [i[1] for i in items if i[0] == "route"]
        settled = sorted({i[1] for i in items if i[0] == "settled"})
        if routes:
            self.tell(self.book.conversations, RouteMessages(items=routes))
        if settled:
            self.tell(self.book.scheduler, SendOutcome(refs=settled))

    def on_message(self, msg: Any, sender: ActorAddress) -> None:
        if isinstance(msg, SendNudge):
            self._flush()
        else:
            super().on_message(msg, sender)

    def on_timer(self, name: str) -> None:
        if name == "sweep":
            self._flush()

    def _flush(self) -> None:
        if self.bridge is not None:
            self.bridge.call(self.client.request_flush)

    def detail(self) -> dict[str, Any]:
        return self.client.detail() if self.bridge is not None else {"connected": False}

