"""What the server under test does not support: a declared outcome, not a failure.

A server may lack a feature on purpose (vLLM without ``--tool-call-parser`` answers 400
"... requires --tool-call-parser ..."). A test of that feature then skips with a reason of one
fixed form, ``not supported: FEATURE: EVIDENCE`` (the evidence is what the server said, made
safe and one line), and every report reads the feature back from that reason with
:func:`feature_of`: the results JSON, the HTML, the terminal summary, the matrix (from the
JUnit skip message) and the certification bundle show it apart from ordinary skips. The
reason is the whole interface, so it survives xdist and JUnit unchanged.

:class:`Capabilities` (the ``vllm_capabilities`` fixture) runs a feature's probe once per
session (per xdist worker) and remembers the answer, so every later test of that feature skips
at once with the same reason.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import NoReturn

import pytest

from pytest_vllm_conformance import untrusted

PREFIX = "not supported: "
#: The evidence kept in a reason: one line, this many characters at most (then a count).
EVIDENCE_LIMIT = 300
#: A feature is named by the harness, never by the server: short, lower case, no colon.
_FEATURE = r"[a-z0-9][a-z0-9 _./-]{0,39}"
_FEATURE_RE = re.compile(rf"{_FEATURE}\Z")
_REASON_RE = re.compile(rf"{re.escape(PREFIX)}({_FEATURE})(?:: (.*))?\Z", re.DOTALL)


def reason(feature: str, evidence: object) -> str:
    """The skip reason for a feature the server lacks: ``not supported: FEATURE: EVIDENCE``."""
    if not _FEATURE_RE.match(feature) or feature != feature.strip():
        raise ValueError(
            f"a feature is 1-40 characters of a-z, 0-9, space, _ . / -, got {feature!r}"
        )
    text = untrusted.line(evidence, EVIDENCE_LIMIT).strip()
    return f"{PREFIX}{feature}: {text}" if text else f"{PREFIX}{feature}"


def not_supported(feature: str, evidence: object) -> NoReturn:
    """Skip this test: the server does not support ``feature``, as ``evidence`` shows (the
    server's own words, e.g. the message of its 400). Reports count it as not supported."""
    __tracebackhide__ = True  # the skip's location is the caller's, not this module's
    pytest.skip(reason(feature, evidence))


def parse(skip_reason: str | None) -> tuple[str, str] | None:
    """(feature, evidence) of a not-supported skip reason; None for any other reason.

    Accepts the reason as pytest reports it too (``Skipped: not supported: ...``).
    """
    if not skip_reason:
        return None
    match = _REASON_RE.match(skip_reason.strip().removeprefix("Skipped: "))
    if match is None or match.group(1).endswith(" "):
        return None
    return match.group(1), match.group(2) or ""


def feature_of(skip_reason: str | None) -> str | None:
    """The feature a not-supported skip names; None when the reason is an ordinary skip."""
    parsed = parse(skip_reason)
    return None if parsed is None else parsed[0]


class Capabilities:
    """What this server supports, found out once per session and remembered by feature.

    ``require(feature, probe)`` runs ``probe`` the first time only: it returns None when the
    feature works, or the evidence (the server's answer) when it does not; then this test and
    every later one that requires the feature skip at once with the same reason. A probe that
    raises is not remembered (the test errors; the next one probes again).
    """

    def __init__(self) -> None:
        self._known: dict[str, str | None] = {}  # feature -> None (supported) or evidence
        self._lock = threading.Lock()

    def require(self, feature: str, probe: Callable[[], str | None]) -> None:
        """Return when ``feature`` is supported; skip as not supported otherwise."""
        with self._lock:
            if feature not in self._known:
                self._known[feature] = probe()
            evidence = self._known[feature]
        if evidence is not None:
            not_supported(feature, evidence)

    def declare(self, feature: str, evidence: object) -> NoReturn:
        """Remember that ``feature`` is not supported (a test found out itself) and skip."""
        text = reason(feature, evidence)  # checks the name before anything is remembered
        with self._lock:
            self._known[feature] = str(evidence)
        pytest.skip(text)

    def supported(self, feature: str) -> bool | None:
        """True or False once known, None before any probe of it."""
        with self._lock:
            if feature not in self._known:
                return None
            return self._known[feature] is None

    def missing(self) -> dict[str, str]:
        """Every feature found not supported so far, with its evidence."""
        with self._lock:
            return {f: e for f, e in self._known.items() if e is not None}


CAPABILITIES_KEY = pytest.StashKey[Capabilities]()


def of(config: pytest.Config) -> Capabilities:
    """The session's capabilities (one per pytest process: each xdist worker probes once)."""
    found = config.stash.get(CAPABILITIES_KEY, None)
    if found is None:
        found = config.stash[CAPABILITIES_KEY] = Capabilities()
    return found
