"""The bundled suites' last line of defence against answers no check foresaw.

Every check reads a server's JSON through validated accessors
(``pytest_vllm_conformance.checks.values``) and raises a titled failure on a wrong
shape. Should a shape still slip through and trip the harness itself (an
``AttributeError`` on a string where an object was expected, say), the test fails with
the titled finding "Harness could not read the answer" instead of a traceback that the
reports would title "Test failed". It is not a substitute for validation: the project's
tests run the whole suite against malformed answers and look for this title.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_vllm_conformance.failures import CheckFailure, Severity

#: What reading a malformed answer raises in Python; anything else is not about the answer.
READING_ERRORS = (AttributeError, IndexError, KeyError, TypeError, ValueError,
                  RecursionError, ZeroDivisionError, StopIteration)
UNREADABLE = "Harness could not read the answer"


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    try:
        return (yield)
    except READING_ERRORS as exc:
        failure = CheckFailure(
            UNREADABLE, expected="an answer of the shape the OpenAI API documents",
            received=f"{type(exc).__name__} while reading it: {str(exc)[:300]}",
            severity=Severity.HIGH,
            detail="a check met a value of a type it did not expect; if the server's "
                   "answer is well-formed, this is a harness bug: please report it")
        for note in getattr(exc, "__notes__", []):  # Hypothesis: the example that failed
            failure.add_note(note)
        raise failure from exc
