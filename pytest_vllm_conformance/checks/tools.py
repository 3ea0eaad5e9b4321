"""Tool-calling checks: the calls a chat answer carries, as an agent reads and runs them.

An agent reads ``message.tool_calls``, looks each function up by ``name``, parses
``arguments`` with ``json.loads`` and calls the function with them, then answers with one
``role: "tool"`` message per call id. Every rule here is one of those steps breaking: a
name that was never offered, ids that repeat, arguments that do not parse (or parse to a
number: the observed ``"9049"``), arguments outside a strict function's schema, a
``tool_choice`` the answer ignores, streamed deltas that assemble into other calls.

``finish_reason``: OpenAI's reference says ``"tool_calls"`` when the model called a tool.
For a *named* ``tool_choice`` OpenAI's own API answers ``"stop"`` (reported by its users and
mirrored on purpose by vLLM, whose frontends both return ``"stop"`` there), so a client
cannot rely on ``"tool_calls"`` in that one case: ``"stop"`` is accepted for a named choice
only. ``"length"`` with calls is never accepted: the calls may be cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_vllm_conformance.checks import values
from pytest_vllm_conformance.checks.registry import Context, Verdict, check
from pytest_vllm_conformance.client.records import loads
from pytest_vllm_conformance.failures import Findings, Severity

ID_MISSING = Verdict("Tool call has no id", Severity.HIGH)
IDS_REPEAT = Verdict("Tool calls share an id", Severity.HIGH)
NOT_FUNCTION = Verdict("Tool call type is not 'function'", Severity.MEDIUM)
NAME_NOT_OFFERED = Verdict("Tool call names a function that was not offered", Severity.HIGH)
ARGS_NOT_JSON = Verdict("Tool call arguments are not a JSON string", Severity.HIGH)
ARGS_NOT_OBJECT = Verdict("Tool call arguments are not a JSON object", Severity.HIGH)
ARGS_INVALID = Verdict(
    "Strict tool call arguments violate the function's parameters", Severity.HIGH
)
FINISH_NOT_TOOL_CALLS = Verdict(
    "Tool calls returned without finish_reason 'tool_calls'", Severity.MEDIUM
)
FINISH_WITHOUT_CALLS = Verdict("finish_reason 'tool_calls' without a tool call", Severity.MEDIUM)
NAMED_IGNORED = Verdict("A named tool_choice did not give exactly one call to it", Severity.HIGH)
REQUIRED_IGNORED = Verdict("tool_choice 'required' gave no tool call", Severity.HIGH)
NONE_IGNORED = Verdict("tool_choice 'none' gave a tool call", Severity.HIGH)
PARALLEL_IGNORED = Verdict("parallel_tool_calls false gave more than one call", Severity.MEDIUM)
EMPTY = Verdict("Answer has neither content nor tool calls", Severity.HIGH)
STREAM_NO_INDEX = Verdict("Streamed tool-call delta has no index", Severity.HIGH)
#: A practical rule, not a schema rule: the spec's ``ChatCompletionMessageToolCallChunk``
#: requires only ``index``, but OpenAI streams a call's ``id`` and ``function.name`` in its
#: first delta and only argument fragments after it, and clients assemble on that (the
#: OpenAI SDK's stream helper concatenates every repeated string field of a call).
STREAM_HEAD = Verdict("Streamed tool call does not open with its id and name", Severity.MEDIUM)
STREAM_DIFFERS = Verdict("Streamed tool calls differ from the non-streamed calls", Severity.HIGH)
LIMIT = 80  # characters of a received value shown in a finding


@dataclass(frozen=True)
class Call:
    """One tool call as received: every field raw (a check judges it), ``path`` its place."""

    path: str
    id: Any
    type: Any
    name: Any
    arguments: Any


@dataclass(frozen=True)
class Turn:
    """What an answer's first choice carries: its text, its calls and its finish reason."""

    content: str | None
    calls: list[Call]
    finish_reason: str | None
    path: str = "$.choices[0]"


@dataclass(frozen=True, kw_only=True)
class Offered(Context):
    """The function tools the request offered (OpenAI's ``tools`` entries)."""

    tools: tuple[dict[str, Any], ...]

    @property
    def names(self) -> list[str]:
        return [str(t["function"]["name"]) for t in self.tools]

    def function(self, name: Any) -> dict[str, Any] | None:
        return next((t["function"] for t in self.tools if t["function"]["name"] == name), None)


@dataclass(frozen=True, kw_only=True)
class Choice(Offered):
    """The request's ``tool_choice``: "auto", "required", "none", or a function's name."""

    choice: str
    named: bool = False


@dataclass(frozen=True, kw_only=True)
class Returned(Context):
    """The calls of the non-streamed answer to the same greedy request."""

    calls: tuple[Call, ...]


def _shown(value: Any) -> str:
    return values.describe(value)[: LIMIT + 20]


def read_calls(message: Any, where: str, curl: str = "") -> list[Call]:
    """``tool_calls`` of a message (absent or null: none), each entry an object; the fields
    stay raw for the checks, and only a ``function`` that is not an object is a shape error."""
    listed = values.maybe_field(message, "tool_calls", list, where, curl) or []
    calls = []
    for k in range(len(listed)):
        entry = values.element(listed, k, dict, f"{where}.tool_calls", curl)
        at = f"{where}.tool_calls[{k}]"
        function = values.maybe_field(entry, "function", dict, at, curl) or {}
        calls.append(
            Call(
                at,
                entry.get("id"),
                entry.get("type"),
                function.get("name"),
                function.get("arguments"),
            )
        )
    return calls


def read_turn(body: Any, curl: str = "") -> Turn:
    """The first choice of a non-streamed chat answer."""
    choice = values.element(values.choices(body, curl), 0, dict, "$.choices", curl)
    message = values.field(choice, "message", dict, "$.choices[0]", curl)
    where = "$.choices[0].message"
    return Turn(
        values.maybe_field(message, "content", str, where, curl),
        read_calls(message, where, curl),
        values.maybe_field(choice, "finish_reason", str, "$.choices[0]", curl),
    )


def parse_arguments(arguments: Any) -> tuple[bool, Any]:
    """(True, the value) when ``arguments`` is a string holding RFC 8259 JSON (Python's
    ``json`` reads ``NaN`` and ``Infinity``, which no other JSON parser does); else
    (False, None)."""
    if not isinstance(arguments, str):
        return False, None
    try:
        return True, loads(arguments, strict=True)
    except ValueError:  # TooDeep included
        return False, None


@check(ID_MISSING, IDS_REPEAT, NOT_FUNCTION, NAME_NOT_OFFERED)
def calls_well_formed(calls: list[Call], ctx: Offered) -> None:
    """Every call has a non-empty string ``id`` no other call has, ``type: "function"`` and
    the name of a function the request offered: the agent answers each call by its id and
    runs the function it names."""
    findings = Findings()
    seen: dict[str, str] = {}
    for c in calls:
        if not isinstance(c.id, str) or not c.id:
            findings.add(
                ID_MISSING.failure(
                    path=f"{c.path}.id",
                    expected="a non-empty string",
                    received=_shown(c.id),
                    curl=ctx.curl,
                )
            )
        elif c.id in seen:
            findings.add(
                IDS_REPEAT.failure(
                    path=f"{c.path}.id",
                    expected="an id no other call of the answer has",
                    received=f"{_shown(c.id)}, also at {seen[c.id]}",
                    curl=ctx.curl,
                )
            )
        else:
            seen[c.id] = c.path
        if c.type != "function":
            findings.add(
                NOT_FUNCTION.failure(
                    path=f"{c.path}.type",
                    expected="'function' (only function tools were offered)",
                    received="no such field" if c.type is None else _shown(c.type),
                    curl=ctx.curl,
                )
            )
        if not isinstance(c.name, str) or c.name not in ctx.names:
            findings.add(
                NAME_NOT_OFFERED.failure(
                    path=f"{c.path}.function.name",
                    expected=f"one of {ctx.names}",
                    received=_shown(c.name),
                    curl=ctx.curl,
                )
            )
    findings.raise_any()


@check(ARGS_NOT_JSON, ARGS_NOT_OBJECT)
def arguments_are_json_objects(calls: list[Call], ctx: Offered) -> None:
    """Every call's ``arguments`` is a string that parses as a JSON object (a function's
    parameters are an object: ``"9049"`` parses, and still breaks ``fn(**json.loads(a))``)."""
    findings = Findings()
    for c in calls:
        where = f"{c.path}.function.arguments"
        ok, value = parse_arguments(c.arguments)
        if not ok:
            findings.add(
                ARGS_NOT_JSON.failure(
                    path=where,
                    expected="a string holding JSON",
                    received=_shown(c.arguments),
                    curl=ctx.curl,
                )
            )
        elif not isinstance(value, dict):
            findings.add(
                ARGS_NOT_OBJECT.failure(
                    path=where,
                    expected="a JSON object (the function's parameters are an object)",
                    received=_shown(c.arguments),
                    curl=ctx.curl,
                )
            )
    findings.raise_any()


@check(ARGS_INVALID)
def strict_arguments_valid(calls: list[Call], ctx: Offered) -> None:
    """A call to a ``"strict": true`` function has arguments valid against its
    ``parameters`` (calls whose arguments do not parse are the JSON check's)."""
    from jsonschema import Draft202012Validator

    findings = Findings()
    for c in calls:
        function = ctx.function(c.name)
        if function is None or function.get("strict") is not True:
            continue
        ok, value = parse_arguments(c.arguments)
        if not ok or not isinstance(value, dict):
            continue
        validator = Draft202012Validator(function.get("parameters") or {})
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            shown = "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:LIMIT]}"
                for e in errors[:3]
            )
            findings.add(
                ARGS_INVALID.failure(
                    path=f"{c.path}.function.arguments",
                    expected=f"arguments valid against {c.name}'s parameters",
                    received=f"{_shown(c.arguments)} ({shown})",
                    curl=ctx.curl,
                )
            )
    findings.raise_any()


@check(FINISH_NOT_TOOL_CALLS, FINISH_WITHOUT_CALLS)
def finish_reason_matches(turn: Turn, ctx: Choice) -> None:
    """With calls, ``finish_reason`` is ``"tool_calls"`` (``"stop"`` too for a named
    ``tool_choice``, as OpenAI answers it); without calls it is not ``"tool_calls"``."""
    where = f"{turn.path}.finish_reason"
    if turn.calls:
        allowed = ("tool_calls", "stop") if ctx.named else ("tool_calls",)
        if turn.finish_reason not in allowed:
            raise FINISH_NOT_TOOL_CALLS.failure(
                path=where,
                expected=" or ".join(repr(a) for a in allowed)
                + f" with {len(turn.calls)} call(s)"
                + (" ('stop' as OpenAI answers a named choice)" if ctx.named else ""),
                received=repr(turn.finish_reason)
                + (": the calls may be cut" if turn.finish_reason == "length" else ""),
                curl=ctx.curl,
            )
    elif turn.finish_reason == "tool_calls":
        raise FINISH_WITHOUT_CALLS.failure(
            path=where,
            expected="'stop' or 'length' for an answer without calls",
            received="'tool_calls' and no tool_calls",
            curl=ctx.curl,
        )


def _calls_named(turn: Turn) -> str:
    if not turn.calls:
        text = turn.content if turn.content is not None else None
        return f"no call; content {_shown(text)}"
    return f"{len(turn.calls)} call(s): " + ", ".join(_shown(c.name) for c in turn.calls[:4])


@check(NAMED_IGNORED)
def named_call(turn: Turn, ctx: Choice) -> None:
    """A ``tool_choice`` naming a function gives exactly one call, to that function."""
    if len(turn.calls) != 1 or turn.calls[0].name != ctx.choice:
        raise NAMED_IGNORED.failure(
            path=f"{turn.path}.message.tool_calls",
            expected=f"exactly one call to {ctx.choice!r}",
            received=_calls_named(turn),
            curl=ctx.curl,
        )


@check(REQUIRED_IGNORED)
def required_call(turn: Turn, ctx: Choice) -> None:
    """``tool_choice: "required"`` gives at least one call (a text answer ignores it)."""
    if not turn.calls:
        raise REQUIRED_IGNORED.failure(
            path=f"{turn.path}.message.tool_calls",
            expected="at least one tool call",
            received=_calls_named(turn),
            curl=ctx.curl,
        )


@check(NONE_IGNORED)
def no_call(turn: Turn, ctx: Choice) -> None:
    """``tool_choice: "none"`` gives no call."""
    if turn.calls:
        raise NONE_IGNORED.failure(
            path=f"{turn.path}.message.tool_calls",
            expected="no tool call",
            received=_calls_named(turn),
            curl=ctx.curl,
        )


@check(PARALLEL_IGNORED)
def at_most_one_call(turn: Turn, ctx: Choice) -> None:
    """``parallel_tool_calls: false`` gives at most one call."""
    if len(turn.calls) > 1:
        raise PARALLEL_IGNORED.failure(
            path=f"{turn.path}.message.tool_calls",
            expected="at most one tool call",
            received=_calls_named(turn),
            curl=ctx.curl,
        )


@check(EMPTY)
def something_answered(turn: Turn, ctx: Context) -> None:
    """An answer carries text (a string, possibly empty) or calls: ``content: null`` with
    no call leaves the agent nothing to act on."""
    if not turn.calls and turn.content is None:
        raise EMPTY.failure(
            path=f"{turn.path}.message",
            expected="content as a string, or tool_calls",
            received=f"content null, no tool_calls, finish_reason {turn.finish_reason!r}",
            curl=ctx.curl,
        )


@dataclass
class _Open:
    """A streamed call being assembled: its argument fragments kept in a list and joined
    once (a string grown by ``+=`` per fragment costs quadratic time on a hostile stream)."""

    path: str
    id: Any
    type: Any
    name: Any
    fragments: list[str] = field(default_factory=list)


@check(STREAM_NO_INDEX, STREAM_HEAD, values.SHAPE)
def assembled(chunks: list[dict[str, Any]], ctx: Context) -> Turn:
    """Streamed chat deltas assemble into one answer: every ``tool_calls`` delta has its
    ``index``; the first delta of each index carries the call's ``id`` and function
    ``name``, later ones only argument fragments (a repeated id or name must be the same);
    returns the assembled first choice (its calls in index order).

    ``type`` may be absent from every delta (the schema requires only ``index``): a streamed
    call is ``"function"`` unless some delta of it says otherwise, and then it carries the
    first other type any delta sent (for :func:`calls_well_formed` to judge)."""
    curl = ctx.curl
    text: list[str] = []
    saw_text = False
    finish: str | None = None
    open_calls: dict[int, _Open] = {}
    for n, chunk in enumerate(chunks):
        listed = values.maybe_field(chunk, "choices", list, f"chunk {n}", curl) or []
        for k in range(len(listed)):
            choice = values.element(listed, k, dict, f"chunk {n}: $.choices", curl)
            at = f"chunk {n}: $.choices[{k}]"
            if (values.maybe_field(choice, "index", int, at, curl) or 0) != 0:
                continue
            finish = values.maybe_field(choice, "finish_reason", str, at, curl) or finish
            delta = values.maybe_field(choice, "delta", dict, at, curl) or {}
            piece = values.maybe_field(delta, "content", str, f"{at}.delta", curl)
            if piece is not None:
                saw_text = True
                text.append(piece)
            deltas = values.maybe_field(delta, "tool_calls", list, f"{at}.delta", curl) or []
            for d in range(len(deltas)):
                where = f"{at}.delta.tool_calls[{d}]"
                entry = values.element(deltas, d, dict, f"{at}.delta.tool_calls", curl)
                _assemble_one(entry, where, open_calls, curl)
    calls = [
        Call(
            f"$.choices[0].message.tool_calls[{i}] (streamed index {i})",
            c.id,
            "function" if c.type is None else c.type,
            c.name,
            "".join(c.fragments),
        )
        for i, c in sorted(open_calls.items())
    ]
    return Turn("".join(text) if saw_text else None, calls, finish, "$.choices[0] (streamed)")


def _assemble_one(
    entry: dict[str, Any], where: str, open_calls: dict[int, _Open], curl: str
) -> None:
    if entry.get("index") is None:
        raise STREAM_NO_INDEX.failure(
            path=f"{where}.index",
            expected="the call's index in every tool-call delta",
            received=_shown(entry)[:LIMIT],
            curl=curl,
        )
    index = values.count(entry["index"], f"{where}.index", curl)
    function = values.maybe_field(entry, "function", dict, where, curl) or {}
    fragment = values.maybe_field(function, "arguments", str, f"{where}.function", curl) or ""
    name = function.get("name")
    if index not in open_calls:
        if entry.get("id") is None or name is None:
            raise STREAM_HEAD.failure(
                path=where,
                expected="the first delta of a call carries its id and function name",
                received=_shown(entry)[:LIMIT],
                curl=curl,
            )
        open_calls[index] = _Open(where, entry.get("id"), _other_type(entry), name, [fragment])
        return
    call = open_calls[index]
    if call.type is None:
        call.type = _other_type(entry)
    for key, got, had in (("id", entry.get("id"), call.id), ("function.name", name, call.name)):
        if got is not None and got != had:
            raise STREAM_HEAD.failure(
                path=f"{where}.{key}",
                expected=f"{_shown(had)} (as the call's first delta said)",
                received=_shown(got),
                curl=curl,
            )
    call.fragments.append(fragment)


def _other_type(entry: dict[str, Any]) -> Any:
    """A delta's ``type`` when it is present and not ``"function"`` (None otherwise)."""
    kind = entry.get("type")
    return None if kind is None or kind == "function" else kind


def _comparable(calls: Any) -> list[tuple[Any, Any]]:
    """(name, arguments) per call, arguments parsed when they parse: a server may
    re-serialise them (vLLM sends ``{"a": 1}`` whole and ``{"a":1}`` streamed)."""
    out = []
    for c in calls:
        ok, value = parse_arguments(c.arguments)
        out.append((c.name, value if ok else c.arguments))
    return out


@check(STREAM_DIFFERS)
def same_calls(streamed: Turn, ctx: Returned) -> None:
    """A greedy request streams the calls it returns: the same names, in order, with equal
    arguments (compared as parsed JSON; ids differ between requests and are not compared)."""
    got, want = _comparable(streamed.calls), _comparable(ctx.calls)
    if got != want:
        raise STREAM_DIFFERS.failure(
            path=f"{streamed.path}.delta.tool_calls",
            expected=repr(want)[: LIMIT * 2],
            received=repr(got)[: LIMIT * 2],
            curl=ctx.curl,
        )
