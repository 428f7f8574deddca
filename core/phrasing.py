"""What a chat model may do to a reply: say the state machine's decision in other words, nothing more.

`prompt` asks for a rephrasing of one fixed phrase given the recent conversation; `accept` keeps the
model's text only when it still carries every fact of the fixed phrase (numbers, e-mail addresses,
links), is short, one line, and does not talk about being a bot. Anything else → the fixed phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RECENT = 6  # lines of conversation shown to the model
_FACT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|https?://[!-~]+|\d+(?:\.\d+)?", re.ASCII)
_BOT_WORDS = re.compile(r"(?<![A-Za-z])(?:AI|GPT|Gemini|LLM)(?![A-Za-z])|人工智能|机器人|语言模型|作为一个",
                        re.IGNORECASE)
_QUOTES = "\"'“”‘’「」『』` "


@dataclass(frozen=True)
class Line:
    """One line of the recent conversation: who said it and what."""

    who: str  # "customer" or "shop"
    text: str


def prompt(fixed: str, recent: list[Line]) -> str:
    """The request to the text model: the decision to convey and the conversation so far."""
    talk = "\n".join(f"{'顾客' if line.who == 'customer' else '店家'}: {line.text}"
                     for line in recent[-MAX_RECENT:]) or "(刚开始聊)"
    return (
        "你是一家修图网店的客服,正在微信上跟顾客聊天。\n"
        f"最近的对话:\n{talk}\n\n"
        f"店家下一句要表达的意思(固定回复):「{fixed}」\n"
        "请把这句换个自然、口语、简短的说法,像真人店员一样。要求:意思完全不变,不增加任何新信息或承诺;"
        "数字、价格、邮箱、链接原样保留;只输出一行回复本身,不要引号,不要解释。"
    )


def facts(text: str) -> list[str]:
    """The numbers, e-mail addresses and links in a text, in order."""
    return _FACT.findall(text)


def accept(fixed: str, phrased: str) -> str | None:
    """The model's rephrasing, cleaned, when it keeps the decision; None when the fixed phrase must be used."""
    text = phrased.strip().strip(_QUOTES).strip()
    if not text or "\n" in text or len(text) > max(40, int(len(fixed) * 2.5)):
        return None
    if _BOT_WORDS.search(text):
        return None
    if sorted(facts(text)) != sorted(facts(fixed)):
        return None
    return text
