"""The bundled suites against real engines started by the test session itself."""

from __future__ import annotations

import pytest

from pytest_vllm_conformance.client import AsyncClient, Client
from pytest_vllm_conformance.target import discover


def _identify(url: str) -> tuple[str, str | None, str]:
    with Client(AsyncClient(url)) as c:
        t = c.run(discover(c.aio, (url,), model=None, ready_within_s=30))
    return t.engine.name, t.engine.version, t.model


def test_vllm_is_identified(vllm_url: str) -> None:
    assert _identify(vllm_url) == ("vllm", "0.32.0", "tiny")


def test_llamacpp_is_identified(llamacpp_url: str) -> None:
    name, _, model = _identify(llamacpp_url)
    assert (name, model) == ("llama.cpp", "smollm2")


def test_bundled_suites_pass_against_vllm(pytester: pytest.Pytester, vllm_url: str) -> None:
    result = pytester.runpytest(f"--vllm-url={vllm_url}", "-v", "-rfEs")
    result.stdout.fnmatch_lines(["*vllm-conformance: * (vllm 0.32.0), model tiny, profile vllm"])
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


def test_bundled_suites_pass_against_llamacpp(pytester: pytest.Pytester,
                                              llamacpp_url: str) -> None:
    result = pytester.runpytest(f"--vllm-url={llamacpp_url}", "-v", "-rfEs")
    result.stdout.fnmatch_lines(["*(llama.cpp *), model smollm2, profile openai"])
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()


def test_replicas_are_all_checked_for_readiness(pytester: pytest.Pytester, vllm_url: str,
                                                llamacpp_url: str) -> None:
    result = pytester.runpytest(f"--vllm-url={vllm_url}", f"--vllm-url={vllm_url}/v1",
                                "-m", "health")
    result.stdout.fnmatch_lines(["vllm-conformance: replicas *"])
    assert result.ret == pytest.ExitCode.OK
