"""Responses API checks (``/v1/responses``): the Response object and its typed stream.

Judged against OpenAI's published description (the vendored spec's ``Response`` and stream
events) and its documented behaviour: a finished response is ``completed``, ``incomplete``
(with ``incomplete_details.reason``) or ``failed``; ``output_text`` is only the SDK's join of
the ``output_text`` parts of ``output``, so the text is computed here from the items; a stream
runs ``response.created``, ``response.in_progress``, then per output item
``output_item.added``, ``content_part.added``, ``output_text.delta``...,
``output_text.done``, ``content_part.done``, ``output_item.done``, and ends with exactly one
terminal event (``response.completed``, ``response.incomplete`` or ``response.failed``),
every event numbered by a strictly increasing ``sequence_number``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.checks import schema as schema_checks
from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.client import Response
from pytest_vllm_conformance.failures import Findings, Severity
from pytest_vllm_conformance.workload.responses import NOT_SERVED

LIMIT = 80  # characters of a received value shown in a finding
STATUSES = ("completed", "failed", "in_progress", "cancelled", "queued", "incomplete")
FINISHED = ("completed", "incomplete", "failed")
#: Terminal stream events and the status the response they carry must have.
TERMINAL = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}
DOCUMENTED_ORDER = (
    "response.created, response.in_progress, then per output item: output_item.added, "
    "content_part.added, output_text.delta..., output_text.done, content_part.done, "
    "output_item.done; then one terminal event"
)

UNFINISHED = Verdict("Finished response has an unfinished status", Severity.HIGH)
STATUS_DETAILS = Verdict("Response status disagrees with its details", Severity.MEDIUM)
NO_TEXT = Verdict("Response carries no output text", Severity.HIGH)
OUTPUT_TEXT = Verdict("output_text differs from the output items' text", Severity.MEDIUM)
NO_USAGE = Verdict("Response has no usage", Severity.MEDIUM)
USAGE_SUM = Verdict("Response usage does not add up", Severity.MEDIUM)
OVERRUN = Verdict("Response overruns max_output_tokens", Severity.HIGH)
NOT_INCOMPLETE = Verdict("Truncated response is not marked incomplete", Severity.MEDIUM)
ITEM_NOT_INCOMPLETE = Verdict("Truncated message item is not marked incomplete", Severity.LOW)
NOT_ECHOED = Verdict("instructions are not echoed in the Response", Severity.MEDIUM)
NOT_USED = Verdict("instructions did not reach the model", Severity.HIGH)
UNTYPED = Verdict("Responses stream event has no type", Severity.HIGH)
EVENT_NAME = Verdict("SSE event name differs from the event's type", Severity.MEDIUM)
ORDER = Verdict("Responses stream events out of the documented order", Severity.MEDIUM)
SEQUENCE = Verdict("Responses stream sequence_number does not strictly increase", Severity.MEDIUM)
DELTAS = Verdict("Streamed deltas do not add up to the final text", Severity.HIGH)
NO_TERMINAL = Verdict("Responses stream does not end with a terminal event", Severity.HIGH)
TERMINAL_STATUS = Verdict("Terminal event disagrees with the response status", Severity.MEDIUM)
STORED = Verdict("Stored response differs from the one returned", Severity.MEDIUM)
NOT_RETRIEVABLE = Verdict("A response accepted with store: true cannot be retrieved", Severity.HIGH)
PREVIOUS = Verdict("previous_response_id did not carry the conversation", Severity.HIGH)


@dataclass(frozen=True, kw_only=True)
class Limit(Context):
    """The ``max_output_tokens`` the request asked for."""

    limit: int


@dataclass(frozen=True, kw_only=True)
class Instructions(Context):
    """The instructions sent, and the Response to the same request without them."""

    instructions: str
    without: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Earlier(Context):
    """The Response an answer is compared with: the one stored, or the turn it continues."""

    earlier: dict[str, Any] = field(default_factory=dict)


# -- the Response object -----------------------------------------------------------------------
def _status(body: Any, curl: str) -> str:
    return values.field(body, "status", str, "$", curl)


@check(UNFINISHED, STATUS_DETAILS, values.SHAPE)
def finished(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> None:
    """A synchronous request's Response is finished (``completed``, ``incomplete`` or
    ``failed``) and its details agree: ``incomplete`` names its reason, ``failed`` its error,
    ``completed`` neither."""
    status = _status(body, ctx.curl)
    if status not in FINISHED:
        raise UNFINISHED.failure(
            path="$.status",
            expected=" or ".join(FINISHED) + " (the request was not a background one)",
            received=repr(status),
            curl=ctx.curl,
        )
    details = values.maybe_field(body, "incomplete_details", dict, "$", ctx.curl)
    reason = values.maybe_field(details or {}, "reason", str, "$.incomplete_details", ctx.curl)
    error = values.maybe_field(body, "error", dict, "$", ctx.curl)
    wrong: tuple[str, str] | None = None
    if status == "incomplete" and not reason:
        wrong = "$.incomplete_details.reason", "a reason (max_output_tokens, content_filter)"
    elif status != "incomplete" and details is not None:
        wrong = "$.incomplete_details", "null unless status is incomplete"
    elif status == "failed" and error is None:
        wrong = "$.error", "the error that made it fail"
    elif status != "failed" and error is not None:
        wrong = "$.error", "null unless status is failed"
    if wrong:
        path, expected = wrong
        shown = details if path.startswith("$.incomplete") else error
        raise STATUS_DETAILS.failure(
            path=path,
            expected=f"{expected} (status {status!r})",
            received=values.describe(shown),
            curl=ctx.curl,
        )


def _items(body: Any, curl: str) -> list[dict[str, Any]]:
    listed = values.field(body, "output", list, "$", curl)
    return [values.element(listed, i, dict, "$.output", curl) for i in range(len(listed))]


def _parts(item: dict[str, Any], where: str, curl: str) -> list[dict[str, Any]]:
    listed = values.maybe_field(item, "content", list, where, curl) or []
    return [values.element(listed, i, dict, f"{where}.content", curl) for i in range(len(listed))]


def text_of(body: Any, curl: str = "") -> str:
    """The text a user gets: every ``output_text`` part of every message item, joined (what
    the SDK's ``output_text`` property computes)."""
    texts: list[str] = []
    for i, item in enumerate(_items(body, curl)):
        if item.get("type") != "message":
            continue
        for k, part in enumerate(_parts(item, f"$.output[{i}]", curl)):
            if part.get("type") == "output_text":
                texts.append(values.field(part, "text", str, f"$.output[{i}].content[{k}]", curl))
    return "".join(texts)


@check(NO_TEXT, OUTPUT_TEXT, values.SHAPE)
def output_text(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> str:
    """``output`` holds an assistant message with text, and an ``output_text`` the server
    sends (the SDK's convenience, allowed on the wire) is that text; returns it."""
    text = text_of(body, ctx.curl)
    if not text:
        kinds = [str(item.get("type")) for item in _items(body, ctx.curl)]
        raise NO_TEXT.failure(
            path="$.output",
            expected="a message item with an output_text part",
            received=f"output items {kinds}" if kinds else "an empty output list",
            curl=ctx.curl,
        )
    sent = values.maybe_field(body, "output_text", str, "$", ctx.curl)
    if sent is not None and sent != text:
        raise OUTPUT_TEXT.failure(
            path="$.output_text",
            expected=f"the items' text {text[:80]!r}",
            received=repr(sent[:80]),
            curl=ctx.curl,
        )
    return text


def _usage(body: Any, curl: str) -> dict[str, Any]:
    usage = values.maybe_field(body, "usage", dict, "$", curl)
    if usage is None:
        raise NO_USAGE.failure(
            path="$.usage", expected="input, output and total tokens", received="none", curl=curl
        )
    return usage


def _count(usage: dict[str, Any], name: str, curl: str) -> int:
    return values.count(values.field(usage, name, int, "$.usage", curl), f"$.usage.{name}", curl)


@check(NO_USAGE, USAGE_SUM, values.SHAPE)
def usage_adds_up(body: dict[str, Any], ctx: Context = NO_CONTEXT) -> None:
    """``usage``: input + output = total; cached tokens at most the input, reasoning tokens
    at most the output; some input was counted."""
    usage = _usage(body, ctx.curl)
    into, out, total = (
        _count(usage, f"{n}_tokens", ctx.curl) for n in ("input", "output", "total")
    )
    findings = Findings()

    def bad(path: str, expected: str, received: str) -> None:
        findings.add(
            USAGE_SUM.failure(path=path, expected=expected, received=received, curl=ctx.curl)
        )

    if into + out != total:
        bad("$.usage.total_tokens", f"input + output = {into + out}", str(total))
    if into == 0:
        bad("$.usage.input_tokens", "the input counted (more than 0)", "0")
    for name, bound, whole in (
        ("input_tokens_details", "cached_tokens", into),
        ("output_tokens_details", "reasoning_tokens", out),
    ):
        details = values.maybe_field(usage, name, dict, "$.usage", ctx.curl) or {}
        part = values.maybe_field(details, bound, int, f"$.usage.{name}", ctx.curl) or 0
        if not 0 <= part <= whole:
            bad(f"$.usage.{name}.{bound}", f"between 0 and {whole}", str(part))
    findings.raise_any()


@check(OVERRUN, NOT_INCOMPLETE, ITEM_NOT_INCOMPLETE, NO_USAGE, values.SHAPE)
def max_output_tokens_respected(body: dict[str, Any], ctx: Limit) -> None:
    """At most ``max_output_tokens`` output tokens; an answer that reached the limit is
    ``incomplete`` with reason ``max_output_tokens``, and its message item ``incomplete``."""
    out = _count(_usage(body, ctx.curl), "output_tokens", ctx.curl)
    if out > ctx.limit:
        raise OVERRUN.failure(
            path="$.usage.output_tokens",
            expected=f"at most {ctx.limit}",
            received=str(out),
            curl=ctx.curl,
        )
    if out < ctx.limit:
        return  # the model finished before the limit: nothing was cut
    status = _status(body, ctx.curl)
    details = values.maybe_field(body, "incomplete_details", dict, "$", ctx.curl) or {}
    reason = values.maybe_field(details, "reason", str, "$.incomplete_details", ctx.curl)
    if status != "incomplete" or reason != "max_output_tokens":
        raise NOT_INCOMPLETE.failure(
            path="$.status",
            expected='status "incomplete", incomplete_details.reason "max_output_tokens"',
            received=f"status {status!r}, reason {reason!r} after {out} of {ctx.limit} tokens",
            curl=ctx.curl,
        )
    for i, item in enumerate(_items(body, ctx.curl)):
        said = values.maybe_field(item, "status", str, f"$.output[{i}]", ctx.curl)
        if item.get("type") == "message" and said != "incomplete":
            raise ITEM_NOT_INCOMPLETE.failure(
                path=f"$.output[{i}].status",
                expected='"incomplete" (the message was cut)',
                received=repr(said),
                curl=ctx.curl,
            )


@check(NOT_ECHOED, NOT_USED, NO_USAGE, values.SHAPE)
def instructions_honoured(body: dict[str, Any], ctx: Instructions) -> None:
    """The Response echoes the ``instructions`` sent, and they reached the model: the input
    counts more tokens than the same request without them (the text an instruction changes
    cannot be judged honestly; its presence in the input can)."""
    echoed = body.get("instructions")
    if echoed != ctx.instructions:
        raise NOT_ECHOED.failure(
            path="$.instructions",
            expected=repr(ctx.instructions[:80]),
            received=values.describe(echoed),
            curl=ctx.curl,
        )
    given = _count(_usage(body, ctx.curl), "input_tokens", ctx.curl)
    bare = _count(_usage(ctx.without, ctx.curl), "input_tokens", ctx.curl)
    if given <= bare:
        raise NOT_USED.failure(
            path="$.usage.input_tokens",
            expected=f"more than the {bare} input tokens of the same request without them",
            received=str(given),
            curl=ctx.curl,
        )


@dataclass(frozen=True, kw_only=True)
class Stored(Context):
    """The id of the response the server accepted with ``store: true``."""

    response_id: str


@check(NOT_RETRIEVABLE)
def retrievable(r: Response, ctx: Stored) -> None:
    """A response the server accepted with ``store: true`` can be read back: ``GET
    /v1/responses/{id}`` does not answer "not found" (404), or as if the route were not
    served (405, 501). A server without storage refuses ``store: true`` instead (a "not
    supported" skip); one that accepts it and stores nothing misleads every client that
    continues a conversation with ``previous_response_id``."""
    if r.status in NOT_SERVED:
        raise NOT_RETRIEVABLE.failure(
            path=f"GET /v1/responses/{ctx.response_id[:LIMIT]}",
            expected="the stored Response (the POST with store: true was accepted)",
            received=f"HTTP {r.status}: {r.error_message()[:120]}",
            curl=r.curl,
        )


@check(STORED, values.SHAPE)
def same_stored(stored: dict[str, Any], ctx: Earlier) -> None:
    """``GET /v1/responses/{id}`` returns the Response that was answered: its id, status and
    text."""
    for name in ("id", "status"):
        if stored.get(name) != ctx.earlier.get(name):
            raise STORED.failure(
                path=f"$.{name}",
                expected=repr(ctx.earlier.get(name)),
                received=values.describe(stored.get(name)),
                curl=ctx.curl,
            )
    was, now = text_of(ctx.earlier, ctx.curl), text_of(stored, ctx.curl)
    if was != now:
        raise STORED.failure(
            path="$.output", expected=repr(was[:80]), received=repr(now[:80]), curl=ctx.curl
        )


@check(PREVIOUS, NO_USAGE, values.SHAPE)
def continues(body: dict[str, Any], ctx: Earlier) -> None:
    """A turn sent with ``previous_response_id`` (and the first turn's input again) names
    that response and carries the conversation: its input counts more tokens than the
    first turn's."""
    first = values.field(ctx.earlier, "id", str, "$", ctx.curl)
    if body.get("previous_response_id") != first:
        raise PREVIOUS.failure(
            path="$.previous_response_id",
            expected=repr(first),
            received=values.describe(body.get("previous_response_id")),
            curl=ctx.curl,
        )
    now = _count(_usage(body, ctx.curl), "input_tokens", ctx.curl)
    was = _count(_usage(ctx.earlier, ctx.curl), "input_tokens", ctx.curl)
    if now <= was:
        raise PREVIOUS.failure(
            path="$.usage.input_tokens",
            expected=f"more than the first turn's {was} (its input and answer come first)",
            received=str(now),
            curl=ctx.curl,
        )


# -- the stream -----------------------------------------------------------------------------------
@check(UNTYPED, EVENT_NAME)
def typed_events(r: Response, ctx: Context = NO_CONTEXT) -> list[dict[str, Any]]:
    """Every streamed payload is a JSON object with a string ``type``; an SSE ``event:``
    line, when sent, names that type (the SDK dispatches on it). Returns the events."""
    events = r.chunks()
    sent = [ev for ev in r.events if ev.data.strip() != b"[DONE]"]
    for i, (ev, event) in enumerate(zip(sent, events, strict=True)):
        kind = event.get("type")
        if not isinstance(kind, str) or not kind:
            raise UNTYPED.failure(
                path=f"event {i}.type",
                expected="the event's type, a string",
                received=values.describe(kind),
                curl=r.curl,
            )
        name = ev.event.decode("utf-8", "replace")
        if name and name != kind:
            raise EVENT_NAME.failure(
                path=f"event {i}",
                expected=f"event: {kind}",
                received=f"event: {name}",
                curl=r.curl,
            )
    return events


@check(schema_checks.VIOLATION, schema_checks.EXTRA_FIELD)
def events_match(events: list[dict[str, Any]], ctx: schema_checks.Schema) -> None:
    """Each event validates against its type's schema (``response.output_text.delta`` ->
    ``ResponseTextDeltaEvent``); a type the spec does not define is an extra field."""
    from pytest_vllm_conformance.schemas.validate import stream_event_roots

    roots = stream_event_roots()
    findings = Findings()
    for i, event in enumerate(events):
        kind = str(event.get("type"))
        where = f"stream event {i} ({kind})"
        if kind not in roots:
            findings.add(
                schema_checks.EXTRA_FIELD.failure(
                    path="$.type",
                    expected="an event type the OpenAI API defines",
                    received=repr(kind[:80]),
                    curl=ctx.curl,
                    detail=where,
                )
            )
            continue
        findings.check(
            schema_checks.matches,
            event,
            schema_checks.Schema(root=roots[kind], profile=ctx.profile, curl=ctx.curl, where=where),
        )
    findings.raise_any()


def _index(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Order:
    """The documented lifecycle, walked event by event; ``fail`` names the first break."""

    def __init__(self) -> None:
        self.created = self.in_progress = self.ended = False
        self.parts: dict[int, dict[int, str]] = {}  # open item -> part -> state
        self.part_kind: dict[tuple[int, int], str] = {}
        self.closed: set[int] = set()
        self.item_of: dict[str, int] = {}

    def item(self, event: dict[str, Any]) -> int | None:
        """The output index an event belongs to (by ``output_index``, else its item's id)."""
        k = _index(event.get("output_index"))
        if k is None and isinstance(event.get("item_id"), str):
            k = self.item_of.get(event["item_id"])
        if k is None and len(self.parts) == 1:
            k = next(iter(self.parts))
        return k

    def step(self, event: dict[str, Any]) -> str:
        kind = str(event.get("type"))
        if self.ended:
            return "after the terminal event"
        if kind == "response.queued":
            return "after response.created" if self.created else ""
        if kind == "response.created":
            self.created = not self.created
            return "" if self.created else "a second response.created"
        if not self.created:
            return "before response.created"
        if kind == "error":
            return ""
        if kind in TERMINAL:
            self.ended = True
            still = sorted(self.parts)
            return f"before output_item.done of output item {still[0]}" if still else ""
        if kind == "response.in_progress":
            if self.in_progress or self.parts or self.closed:
                return "not straight after response.created"
            self.in_progress = True
            return ""
        if not self.in_progress:
            return "before response.in_progress"
        return self.item_step(kind, event)

    def item_step(self, kind: str, event: dict[str, Any]) -> str:
        if kind == "response.output_item.added":
            k = _index(event.get("output_index"))
            if k is None or k in self.parts or k in self.closed:
                return f"for output item {k} twice (or without an output_index)"
            self.parts[k] = {}
            item = event.get("item")
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                self.item_of[item["id"]] = k
            return ""
        k = self.item(event)
        if k is None or k not in self.parts:
            return f"outside the output_item.added ... output_item.done of output item {k}"
        parts = self.parts[k]
        c = _index(event.get("content_index"))
        c = 0 if c is None else c
        if kind == "response.output_item.done":
            still = [p for p, s in parts.items() if s != "done"]
            if still:
                return f"before content_part.done of part {still[0]}"
            del self.parts[k]
            self.closed.add(k)
        elif kind == "response.content_part.added":
            if c in parts:
                return f"for content part {c} twice"
            parts[c] = "open"
            part = event.get("part")
            self.part_kind[k, c] = str(part.get("type")) if isinstance(part, dict) else ""
        elif kind == "response.content_part.done":
            texty = self.part_kind.get((k, c)) in ("output_text", "refusal")
            if parts.get(c) not in (("text_done",) if texty else ("open", "text_done")):
                return f"for content part {c} before its text's done event (or its added)"
            parts[c] = "done"
        elif kind.endswith((".delta", ".done")) and kind.split(".")[1] in (
            "output_text",
            "refusal",
        ):
            if parts.get(c) != "open":
                return f"for content part {c} outside its content_part.added ... done"
            parts[c] = "text_done" if kind.endswith(".done") else "open"
        return ""


@check(ORDER)
def events_in_order(events: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """The events follow the documented lifecycle: created, in_progress, each item's
    added/part/deltas/done nested in order, nothing after the terminal event."""
    order = _Order()
    for i, event in enumerate(events):
        if wrong := order.step(event):
            raise ORDER.failure(
                path=f"event {i}",
                expected=DOCUMENTED_ORDER,
                received=f"{event.get('type')} {wrong}",
                curl=ctx.curl,
            )


@check(SEQUENCE)
def sequence_increases(events: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """Every event carries an integer ``sequence_number``, each larger than the last."""
    last: int | None = None
    for i, event in enumerate(events):
        number = _index(event.get("sequence_number"))
        if number is None or (last is not None and number <= last):
            raise SEQUENCE.failure(
                path=f"event {i} ({event.get('type')}).sequence_number",
                expected="an integer" + (f" above {last}" if last is not None else ""),
                received=values.describe(event.get("sequence_number")),
                curl=ctx.curl,
            )
        last = number


@check(DELTAS)
def deltas_add_up(events: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> None:
    """Per content part, the ``output_text.delta``\\ s joined are the text of its
    ``output_text.done``, its ``content_part.done``, its ``output_item.done`` and the
    terminal event's Response. A part whose final text is not empty had deltas (a stream
    that sends only the done text streamed nothing), and the terminal Response carries
    every part that was streamed (an ``output: []`` after streamed text loses it)."""
    order = _Order()
    pieces: dict[tuple[int, int], list[str]] = {}  # joined once: no quadratic growth
    finals: list[tuple[str, tuple[int, int], Any]] = []
    terminal: tuple[str, dict[tuple[int, int], Any]] | None = None
    for event in events:
        kind = str(event.get("type"))
        order.step(event)  # only to map events to their item
        k = order.item(event) if kind != "response.output_item.added" else None
        c = _index(event.get("content_index")) or 0
        if kind == "response.output_text.delta" and k is not None:
            pieces.setdefault((k, c), []).append(str(event.get("delta", "")))
        elif kind == "response.output_text.done" and k is not None:
            finals.append(("output_text.done", (k, c), event.get("text")))
        elif kind == "response.content_part.done" and k is not None:
            part = event.get("part")
            if isinstance(part, dict) and part.get("type") == "output_text":
                finals.append(("content_part.done", (k, c), part.get("text")))
        elif kind == "response.output_item.done" and _index(event.get("output_index")) is not None:
            _item_texts(event.get("item"), event["output_index"], "output_item.done", finals)
        elif kind in TERMINAL and isinstance(event.get("response"), dict):
            output = event["response"].get("output")
            texts: list[tuple[str, tuple[int, int], Any]] = []
            for n, item in enumerate(output if isinstance(output, list) else []):
                _item_texts(item, n, f"{kind} response", texts)
            finals += texts
            terminal = kind, {key: text for _, key, text in texts}
    joined = {key: "".join(parts) for key, parts in pieces.items()}
    for where, key, text in finals:
        if key not in joined and isinstance(text, str) and text:
            raise DELTAS.failure(
                path=f"output item {key[0]}, content part {key[1]}",
                expected="output_text.delta events carrying the part's text",
                received=f"no delta, and {where} text {values.describe(text)}",
                curl=ctx.curl,
            )
        if key in joined and text != joined[key]:
            raise DELTAS.failure(
                path=f"output item {key[0]}, content part {key[1]}",
                expected=f"the deltas joined: {joined[key][:80]!r}",
                received=f"{where} text {values.describe(text)}",
                curl=ctx.curl,
            )
    if terminal is not None:
        ending, carried = terminal
        for key in sorted(set(joined) - set(carried)):
            if joined[key]:
                raise DELTAS.failure(
                    path=f"output item {key[0]}, content part {key[1]}",
                    expected=f"the deltas joined in the {ending} response: {joined[key][:80]!r}",
                    received=f"no output_text part {key[1]} of output item {key[0]} there",
                    curl=ctx.curl,
                )


def _item_texts(item: Any, k: int, where: str, out: list[tuple[str, tuple[int, int], Any]]) -> None:
    content = item.get("content") if isinstance(item, dict) else None
    for c, part in enumerate(content if isinstance(content, list) else []):
        if isinstance(part, dict) and part.get("type") == "output_text":
            out.append((where, (k, c), part.get("text")))


@check(NO_TERMINAL, TERMINAL_STATUS)
def ends_with_terminal(events: list[dict[str, Any]], ctx: Context = NO_CONTEXT) -> dict[str, Any]:
    """The stream's last event is ``response.completed``, ``response.incomplete`` or
    ``response.failed``, carrying a Response whose status is that one; returns it."""
    last = events[-1] if events else {}
    kind = str(last.get("type", "(no event)"))
    response = last.get("response")
    if kind not in TERMINAL or not isinstance(response, dict):
        raise NO_TERMINAL.failure(
            path=f"event {len(events) - 1}",
            expected="response.completed, response.incomplete or response.failed, with the "
            "Response",
            received=f"{kind} last",
            curl=ctx.curl,
        )
    status = response.get("status")
    if status != TERMINAL[kind]:
        right = [k for k, s in TERMINAL.items() if s == status]
        raise TERMINAL_STATUS.failure(
            path=f"event {len(events) - 1}.response.status",
            expected=f"{TERMINAL[kind]!r} in a {kind} event",
            received=f"{values.describe(status)}" + (f" (that is {right[0]})" if right else ""),
            curl=ctx.curl,
        )
    return response
