"""The bundled suites' last line of defence against answers no check foresaw.

A reading error that escapes every check (see
:mod:`pytest_vllm_conformance.checks.harness`) fails the test with the titled finding
"Harness could not read the answer" instead of a traceback. It is not a substitute for
validation: the project's tests run the whole suite against malformed answers and look for
this title.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from pytest_vllm_conformance.checks import harness


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    try:
        return (yield)
    except harness.READING_ERRORS as exc:
        harness.answer_read(exc)
        raise  # answer_read always raises
