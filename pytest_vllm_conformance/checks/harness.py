"""The harness's last line of defence: an answer no check foresaw is a titled finding.

Every check reads a server's JSON through validated accessors (:mod:`.values`) and raises
a titled failure on a wrong shape. Should a shape still slip through and trip the harness
(an ``AttributeError`` on a string where an object was expected, say), the bundled suites'
conftest judges the error with :func:`answer_read`, so the test fails with "Harness could
not read the answer" instead of a traceback the reports would title "Test failed". No fault
proves it bites: it names a harness bug, and the project's tests look for its absence.
"""

from __future__ import annotations

from pytest_vllm_conformance.checks.registry import NO_CONTEXT, Context, Verdict, check
from pytest_vllm_conformance.failures import Severity

#: What reading a malformed answer raises in Python; anything else is not about the answer.
READING_ERRORS = (
    AttributeError,
    IndexError,
    KeyError,
    TypeError,
    ValueError,
    RecursionError,
    ZeroDivisionError,
    StopIteration,
)
UNREADABLE = Verdict("Harness could not read the answer", Severity.HIGH)


@check(UNREADABLE)
def answer_read(exc: BaseException, ctx: Context = NO_CONTEXT) -> None:
    """The harness read the answer without a Python error (one of :data:`READING_ERRORS`,
    which the suite passes here); the error's notes (Hypothesis' failing example) follow."""
    failure = UNREADABLE.failure(
        expected="an answer of the shape the OpenAI API documents",
        received=f"{type(exc).__name__} while reading it: {str(exc)[:300]}",
        curl=ctx.curl,
        detail="a check met a value of a type it did not expect; if the server's answer is "
        "well-formed, this is a harness bug: please report it",
    )
    for note in getattr(exc, "__notes__", []):  # Hypothesis: the example that failed
        failure.add_note(note)
    raise failure from exc
