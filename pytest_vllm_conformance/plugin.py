"""The pytest11 entry point: options, markers, bundled-suite collection and fixtures.

This module stays cheap to import: the client, the server launcher and everything
that talks to the network load only when a target is given.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_vllm_conformance import hookspecs
from pytest_vllm_conformance.config import SETTINGS_KEY, Settings, add_options
from pytest_vllm_conformance.config import settings as run_settings

if TYPE_CHECKING:
    from pytest_vllm_conformance.client import Client
    from pytest_vllm_conformance.perf.loadtest import LoadRunner
    from pytest_vllm_conformance.session import ConformanceSession
    from pytest_vllm_conformance.target import StartedServer
    from pytest_vllm_conformance.target.discovery import Target
    from pytest_vllm_conformance.target.topology import Topology

MARKERS = {
    "compliance": "OpenAI schema and parameter conformance of completions, chat and models",
    "streaming": "Server-Sent Events framing and chunk semantics",
    "embeddings": "/v1/embeddings conformance",
    "errors": "error bodies, status codes and authorization",
    "determinism": "identical outputs under concurrency, batching, replicas and caching",
    "latency": "TTFT, ITL, TPOT and end-to-end latency percentiles against SLOs",
    "memory": "server memory stability under sustained load",
    "metrics": "the Prometheus /metrics endpoint",
    "health": "liveness and readiness endpoints",
    "cancellation": "dropped streams free their server resources",
    "topology": "the two-instance service: routing by path and health over both engines",
    # the agentic surface (issue 17)
    "structured_outputs": "chat response_format: json_schema and json_object answers parse and fit",
    "tools": "tool calling: tool_choice honoured, well-formed calls and arguments, streamed deltas",
    "responses": "the Responses API (/v1/responses): Response objects, typed streams, storage",
    # issue 18: baseline
    "baseline": "compared with an earlier run (--vllm-baseline): greedy answers and latency",
}
#: Bundled suites run in this order: a smoke test first, then what reads the server, then
#: what may leave it busy (huge or invalid requests a weak server keeps working on), and
#: last what stops and starts its containers.
SUITE_ORDER = (
    "test_health",
    "test_compliance",
    "test_streaming",
    "test_structured_outputs",
    "test_tools",
    "test_responses",
    "test_embeddings",
    "test_metrics",
    "test_determinism",
    "test_latency",
    "test_memory",
    "test_cancellation",
    "test_generated",
    "test_errors",
    "test_baseline",  # issue 18: last but before topology
    "test_topology",
)
SESSION_KEY = pytest.StashKey["ConformanceSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    settings = run_settings(config)
    if settings.prompts is not None:
        from pytest_vllm_conformance.workload import prompts

        prompts.load(settings.prompts)  # a bad file is a usage error now, not at collection
    _select_suites(config, settings)
    if settings.has_target:
        from pytest_vllm_conformance.session import ConformanceSession

        state = ConformanceSession(config, settings)
        config.stash[SESSION_KEY] = state
        config.pluginmanager.register(state, "vllm-conformance-session")
        if not hasattr(config, "workerinput"):  # the controller sees every worker's reports
            from pytest_vllm_conformance.report.results import ResultsRecorder

            suites = tuple(m for m in MARKERS if m not in ("compliance", "errors"))
            recorder = ResultsRecorder(
                config, state, settings.json_path, (*suites, "compliance", "errors")
            )
            config.pluginmanager.register(recorder, "vllm-conformance-results")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the bundled suites in :data:`SUITE_ORDER`, after any other tests (stable)."""
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is None or not (settings.has_target or settings.suites == "on"):
        return  # no target: leave a project's own tests exactly as they are
    bundled = str(suites_dir())

    def rank(item: pytest.Item) -> int:
        path = str(item.path)
        if not path.startswith(bundled):
            return -1
        stem = item.path.stem
        return SUITE_ORDER.index(stem) if stem in SUITE_ORDER else len(SUITE_ORDER)

    items.sort(key=rank)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each test's place in its run, which a baseline comparison matches (:mod:`perf.place`)."""
    if SESSION_KEY in item.config.stash:
        from pytest_vllm_conformance.perf import place

        place.note_test(item)


def suites_dir() -> Path:
    """The bundled suites' folder (the repo's suites/, installed as a subpackage)."""
    spec = importlib.util.find_spec("pytest_vllm_conformance.suites")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def _select_suites(config: pytest.Config, settings: Settings) -> None:
    mode = settings.suites
    named = config.args_source is pytest.Config.ArgsSource.ARGS
    if named and mode != "off":
        config.args = [_bundled_node(arg, config) for arg in config.args]
    if mode == "on" or (mode == "auto" and settings.has_target and not named):
        suites = str(suites_dir())
        config.args = [*config.args, suites] if named else [suites]


def _bundled_node(arg: str, config: pytest.Config) -> str:
    """``test_compliance.py::test_x`` (as printed in a report) names a bundled test."""
    path, sep, rest = arg.partition("::")
    if not path.startswith("test_") or (config.invocation_params.dir / path).exists():
        return arg
    bundled = suites_dir() / path
    return f"{bundled}{sep}{rest}" if bundled.is_file() else arg


# -- fixtures ------------------------------------------------------------------------------
# The run's validated options, for code that runs before any fixture: a suite's
# ``pytest_generate_tests`` (fixtures use :func:`vllm_settings`). Read once, kept in the stash.
settings = run_settings


def _session(config: pytest.Config) -> ConformanceSession:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.target is None:
        pytest.fail(
            "this test needs a server under test: pass --vllm-url=URL or --vllm-serve=MODEL.",
            pytrace=False,
        )
    return state


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Name the target, engine and profile in pytest's own JUnit XML (--junitxml).

    Written here, on the process that writes the file, once the target is identified
    (ConformanceSession's tryfirst sessionstart): ``record_testsuite_property`` does not
    work under xdist, where workers have no JUnit writer and the properties were lost.
    """
    from _pytest.junitxml import xml_key

    xml = session.config.stash.get(xml_key, None)
    state = session.config.stash.get(SESSION_KEY, None)
    if xml is None or state is None or state.target is None:
        return  # no --junitxml, no target, or an xdist worker (the controller writes it)
    for name, value in run_properties(state):
        xml.add_global_property(name, value)


def run_properties(state: ConformanceSession) -> list[tuple[str, str]]:
    """The run's identity as JUnit suite properties: what ran against what, exactly."""
    from pytest_vllm_conformance import __version__

    t = state.target
    assert t is not None
    props = [
        ("vllm_url", t.display_url),
        ("vllm_engine", t.engine.name),
        ("vllm_engine_version", t.engine.version or ""),
        ("vllm_model", t.model),
        ("vllm_profile", state.profile),
        ("vllm_system_fingerprint", t.engine.fingerprint or ""),
        ("vllm_conformance_version", __version__),
    ]
    if state.deployment is not None:  # which image, exactly: the tag may move
        props += [
            ("vllm_image", state.settings.container.image or ""),
            ("vllm_image_id", state.deployment.image_id),
        ]
    props += state.started_properties()  # what it started: topology, replicas, embeddings
    if state.cpu_plan is not None:  # which CPUs the server and the harness were kept to
        props.append(("vllm_cpu_split", state.cpu_plan.describe()))
    return props


#: Tests under these markers measure the server, or need it idle (cancellation reads the
#: running gauge at 0): they hold the per-server lock alone, so nothing of the run overlaps
#: them (xdist included); every other test with a target holds it shared.
EXCLUSIVE_MARKERS = ("determinism", "latency", "memory", "cancellation", "baseline")


@pytest.fixture(autouse=True)
def _vllm_exclusive(request: pytest.FixtureRequest) -> Iterator[None]:
    """Hold a per-target file lock for every test with a target: exclusively during
    determinism, latency, memory, cancellation and baseline tests, shared during the rest. Other
    tests (compliance, streaming on another xdist worker) then never run during a
    measurement, and keep no request running while cancellation waits for an idle server.

    A file lock rather than xdist groups: it also holds across separate pytest runs
    against the same server, and needs no --dist mode.
    """
    state = request.config.stash.get(SESSION_KEY, None)
    if state is None or state.target is None:
        yield
        return
    import fcntl
    import hashlib
    import tempfile

    exclusive = any(request.node.get_closest_marker(m) for m in EXCLUSIVE_MARKERS)
    digest = hashlib.sha256(state.target.base_url.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"vllm-conformance-{digest}.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def vllm_target(pytestconfig: pytest.Config) -> Target:
    """The server under test, identified and ready."""
    target = _session(pytestconfig).target
    assert target is not None
    return target


@pytest.fixture(scope="session")
def vllm_client(pytestconfig: pytest.Config) -> Client:
    """The shared client, pointed at the target, with its key and timeout."""
    client = _session(pytestconfig).client
    assert client is not None
    return client


@pytest.fixture(scope="session")
def vllm_model(vllm_target: Target) -> str:
    """The id of the model under test."""
    return vllm_target.model


@pytest.fixture(scope="session")
def vllm_settings(pytestconfig: pytest.Config) -> Settings:
    """The run's validated options."""
    return settings(pytestconfig)


@pytest.fixture
def vllm_started_server(pytestconfig: pytest.Config) -> StartedServer | None:
    """The server this run started (``--vllm-serve``, ``--vllm-image``): its main process id
    and whether it runs in a container; None for a server found at ``--vllm-url``."""
    from pytest_vllm_conformance.target import StartedServer

    state = _session(pytestconfig)
    pid = state.server_pid
    return None if pid is None else StartedServer(pid, in_container=state.deployment is not None)


@pytest.fixture(scope="session")
def vllm_bitwise_logprobs(pytestconfig: pytest.Config) -> bool:
    """True under --vllm-profile=batch-invariant: logprobs must match bit for bit."""
    return _session(pytestconfig).bitwise_logprobs


@pytest.fixture(scope="session")
def vllm_profile(pytestconfig: pytest.Config) -> str:
    """The conformance profile in force: 'openai' or 'vllm' ('auto' resolved by engine)."""
    return _session(pytestconfig).profile


@pytest.fixture(scope="session")
def vllm_topology(pytestconfig: pytest.Config) -> Topology:
    """The two-instance service this run started (local processes or containers): its
    ``backends`` by role, each with ``pause()`` and ``resume(timeout_s)``, and ``settings``;
    skips (with how to start it) otherwise."""
    topology = _session(pytestconfig).topology
    if topology is None:
        pytest.skip(
            "needs the two-instance service started by the plugin: "
            "--vllm-serve=tiny --vllm-topology=split, or "
            "--vllm-image=IMAGE --vllm-topology=split --vllm-embedding-model=MODEL"
        )
    return topology


@pytest.fixture
def vllm_load(
    request: pytest.FixtureRequest,
    vllm_client: Client,
    vllm_target: Target,
    vllm_settings: Settings,
) -> LoadRunner:
    """Runs load levels, records their percentiles and enforces this test's SLO.

    Limits: the defaults, then --vllm-slo, then ``@pytest.mark.latency(key=value, ...)``.
    """
    from pytest_vllm_conformance.perf.loadtest import LoadRunner

    return LoadRunner(
        vllm_client, vllm_target, vllm_settings, request, early_stop=vllm_settings.perf.early_stop
    )


# issue 17: capabilities
if TYPE_CHECKING:
    from pytest_vllm_conformance.target.capabilities import Capabilities


@pytest.fixture(scope="session")
def vllm_capabilities(pytestconfig: pytest.Config) -> Capabilities:
    """What the server supports, probed once per session: ``.require(feature, probe)`` skips
    as "not supported: FEATURE: EVIDENCE" when the probe returns the server's evidence, and
    every later test of that feature skips at once with the same reason."""
    from pytest_vllm_conformance.target.capabilities import of

    _session(pytestconfig)
    return of(pytestconfig)


# issue 18: baseline
if TYPE_CHECKING:
    from pytest_vllm_conformance.report.compare import Identity


@pytest.fixture(scope="session")
def vllm_baseline(pytestconfig: pytest.Config) -> dict[str, object]:
    """The earlier run's results document (``--vllm-baseline``); skips without one."""
    path = settings(pytestconfig).baseline
    if path is None:
        pytest.skip("no --vllm-baseline given: nothing to compare with")
    from pytest_vllm_conformance.report.compare import load

    return load(path)


@pytest.fixture(scope="session")
def vllm_identity(pytestconfig: pytest.Config) -> Identity:
    """This run's server as a results document names it (engine, version, model, URL)."""
    from pytest_vllm_conformance.report.compare import Identity

    t = _session(pytestconfig).target
    assert t is not None
    return Identity(
        t.engine.name,
        t.engine.version or "-",
        t.model,
        t.engine.fingerprint or "-",
        t.display_url,
        "this run",
    )
