"""Gateway: the IM bridge link, in its own loop thread; routes stored messages, reports settled sends."""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorAddress

from actors.base import ServiceActor
from actors.bridge import ThreadBridge
from core.phrasing import Line
from executors.gemini import gemini_client
from integrations.im_bridge import BridgeClient, PhraseFn
from integrations.phrasing import Phrased, Phraser
from persistence import profiles
from protocol.messages import InboundItem, RouteMessages, SendNudge, SendOutcome
from protocol.settings import Settings


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
        self.client = BridgeClient(self.settings.IM_BRIDGE_URL, self.bridge.post, phrase_fn(self.settings),
                                   self.settings.PHRASE_TIME_LIMIT_S)
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



def phrase_fn(settings: Settings) -> PhraseFn | None:
    """Replies worded by the text model when Gemini is keyed and PHRASE_REPLIES is on; else None."""
    if not settings.PHRASE_REPLIES:
        return None
    client = gemini_client(settings.model_copy(update={"GEMINI_TIMEOUT_S": settings.PHRASE_TIME_LIMIT_S}))
    if client is None:
        return None
    phraser = Phraser(client)

    def phrase(customer_id: str, fixed: str) -> Phrased:
        recent = [Line(who, text) for who, text in profiles.recent_exchange(customer_id)]
        return phraser.phrase(fixed, recent)

    return phrase
