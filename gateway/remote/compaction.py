"""Lossless prompt compaction for calls bound for paid providers (opt-in per task: `[tasks.<name>] compact_prompt`).

Only the conversation's new turn is compacted: the user turns after the last assistant
turn. System prompts, task templates and every earlier turn stay byte for byte as they
were, so a prefix a provider caches (Anthropic's `cache_control` on the system prompt,
OpenAI's, Gemini's and xAI's implicit caching of shared leading tokens) is never changed.

What it does, each step keeping the meaning (none rewrites words):

- whitespace: trailing spaces on lines, runs of spaces and tabs inside a line, more
  than one blank line, leading and trailing blank space. Fenced code blocks keep their
  layout (indentation can be meaning there);
- boilerplate: a paragraph repeated word for word is kept once; a greeting or
  thank-you line standing alone at the start or end of the turn is dropped;
- numbers: trailing zeros of a fraction of three or more digits (`64250.500000` ->
  `64250.5`, `60000.000` -> `60000`), never in dotted sequences (versions, addresses)
  nor two-digit fractions (`3.10` stays); thousands separators in amounts with a
  currency sign or a fraction (`$60,000` -> `$60000`, `1,234.50` -> `1234.50`);
- JSON: an object or array that parses, minified (whitespace outside strings removed:
  the same characters, so no number or string changes form).

Nothing here does I/O; `compact_call` returns the call itself when nothing changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

from gateway.core.contracts import BackendCall, Message, Role

_FENCE = re.compile(r"(```.*?```)", re.DOTALL)
_SPACES = re.compile(r"[ \t]{2,}")
_LINE_END_SPACE = re.compile(r"[ \t]+(?=\n)")
_BLANKS = re.compile(r"\n{3,}")
_TRAILING_ZEROS = re.compile(r"(?<![\d.])(\d+)\.(\d*?[1-9])?(0+)(?![\d.])")
_SEPARATED = re.compile(r"(?<![\d,.])([$€£¥]\s?)?(\d{1,3}(?:,\d{3})+)(\.\d+)?(?![\d,])")
_PLEASANTRY = re.compile(
    r"^(hi|hello|hey|dear [\w ]+|good (morning|afternoon|evening)|thanks( a lot| in advance)?|thank you"
    r"( (very|so) much| in advance)?|many thanks|cheers|best( regards)?|kind regards|regards|"
    r"hope (you are|you're) (well|doing well)|i hope this helps)[\s!,.]*$",
    re.IGNORECASE,
)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Compacted:
    """A call after compaction, and how many characters it lost (0: it is the same call)."""

    call: BackendCall
    chars_before: int
    chars_after: int

    @property
    def saved_chars(self) -> int:
        return self.chars_before - self.chars_after


def compact_call(call: BackendCall) -> Compacted:
    """The call with its new user turns compacted; everything before them left as it was."""
    messages = list(call.messages)
    start = _new_turns_start(messages)
    before = after = 0
    for index in range(start, len(messages)):
        message = messages[index]
        if message.role is not Role.USER:
            continue
        text = compact_text(message.content)
        before, after = before + len(message.content), after + len(text)
        if text != message.content and text:
            messages[index] = replace(message, content=text)
    if before == after:
        return Compacted(call, before, after)
    return Compacted(replace(call, messages=tuple(messages)), before, after)


def compact_text(text: str) -> str:
    """One turn's text, compacted losslessly (see the module's docstring)."""
    parts = _FENCE.split(text)
    out = [_compact_fence(part) if part.startswith("```") else _compact_prose(part) for part in parts]
    joined = "".join(out)
    return _drop_pleasantries(_BLANKS.sub("\n\n", joined)).strip()


def _new_turns_start(messages: list[Message]) -> int:
    """Index of the first of the trailing user turns: after the last system, assistant or tool turn."""
    start = 0
    for index, message in enumerate(messages):
        if message.role is not Role.USER:
            start = index + 1
    return start


def _compact_prose(text: str) -> str:
    """JSON spans minified and kept as they are otherwise; whitespace and numbers cleaned between them."""
    out = [span if is_json else _clean(span) for is_json, span in _json_spans(text)]
    return _dedupe_paragraphs("".join(out))


def _clean(text: str) -> str:
    text = _SPACES.sub(" ", _LINE_END_SPACE.sub("", text))
    text = _SEPARATED.sub(_unseparate, text)
    return _TRAILING_ZEROS.sub(_trim_zeros, text)


def _compact_fence(block: str) -> str:
    """A fenced block keeps its layout; one holding JSON is minified."""
    head, _, rest = block[3:].partition("\n")
    body = rest[:-3] if rest.endswith("```") else rest
    minified = _minified(body.strip())
    if minified is None:
        return block
    return f"```{head}\n{minified}\n```"


def _json_spans(text: str) -> list[tuple[bool, str]]:
    """`text` cut into (is_json, piece): each object or array that parses as JSON, minified, and the text between."""
    out: list[tuple[bool, str]] = []
    index = scan = 0
    while scan < len(text):
        found = min((i for i in (text.find("{", scan), text.find("[", scan)) if i >= 0), default=-1)
        if found < 0:
            break
        try:
            _, end = _DECODER.raw_decode(text, found)
        except ValueError:
            scan = found + 1
            continue
        span = text[found:end]
        minified = _minified(span)
        if minified is None:
            scan = end
            continue
        out += [(False, text[index:found]), (True, minified)]
        index = scan = end
    out.append((False, text[index:]))
    return out


def _minified(span: str) -> str | None:
    """`span` without whitespace outside its strings, when it is a JSON object or array; else None."""
    if not span or span[0] not in "{[":
        return None
    try:
        json.loads(span)
    except ValueError:
        return None
    out: list[str] = []
    in_string = escaped = False
    for char in span:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif not char.isspace():
            out.append(char)
    return "".join(out)


def _unseparate(match: re.Match[str]) -> str:
    currency, digits, fraction = match.group(1), match.group(2), match.group(3)
    if not currency and not fraction:
        return match.group(0)  # "100,200,300" may be a list: left alone
    return f"{currency or ''}{digits.replace(',', '')}{fraction or ''}"


def _trim_zeros(match: re.Match[str]) -> str:
    whole, significant, zeros = match.group(1), match.group(2) or "", match.group(3)
    if len(significant) + len(zeros) < 3:
        return match.group(0)  # "3.10" may be a version: left alone
    return f"{whole}.{significant}" if significant else whole


def _dedupe_paragraphs(text: str) -> str:
    seen: set[str] = set()
    kept: list[str] = []
    for paragraph in text.split("\n\n"):
        key = paragraph.strip()
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(paragraph)
    return "\n\n".join(kept)


def _drop_pleasantries(text: str) -> str:
    lines = text.strip().split("\n")
    while len(lines) > 1 and _PLEASANTRY.match(lines[0].strip()):
        lines.pop(0)
    while len(lines) > 1 and _PLEASANTRY.match(lines[-1].strip()):
        lines.pop()
    return "\n".join(lines)
