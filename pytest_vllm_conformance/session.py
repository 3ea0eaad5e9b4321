"""Per-run state, registered as a plugin: the target, its client, a started server.

Imported only when a target is given, so ``pytest`` without one never loads the
client or touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vllm_conformance import untrusted
from pytest_vllm_conformance.client import AsyncClient, Client, ClientError
from pytest_vllm_conformance.config import REFUSED_GRACE_S, Settings, redact_url
from pytest_vllm_conformance.config.parsers import format_cpus
from pytest_vllm_conformance.failures import CheckFailure, FailureGroup, render_client_error
from pytest_vllm_conformance.report import measurements
from pytest_vllm_conformance.secrets import Secret
from pytest_vllm_conformance.target import cpu_split
from pytest_vllm_conformance.target.discovery import NotReady, Target, discover
from pytest_vllm_conformance.target.local_deployment import LocalDeployment
from pytest_vllm_conformance.target.process import ServerStartError

if TYPE_CHECKING:
    from pytest_vllm_conformance.target.launch import ContainerDeployment
    from pytest_vllm_conformance.target.topology import Topology

WORKER_URLS_KEY = "vllm_conformance_urls"
WORKER_CPUS_KEY = "vllm_conformance_harness_cpus"
#: The replicas and the embedding server this controller started, for workers to test too.
WORKER_REPLICAS_KEY = "vllm_conformance_replicas"
WORKER_EMBEDDING_URL_KEY = "vllm_conformance_embedding_url"
#: Secrets only the controller knows (a container's HF_TOKEN), for workers to redact too.
WORKER_SECRETS_KEY = "vllm_conformance_secrets"


class ConformanceSession:
    """Owns the server under test for one pytest run (controller and xdist workers alike)."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.urls: tuple[str, ...] = settings.urls
        self.replicas: tuple[str, ...] | None = None  # None: the URLs are the replicas
        self.embedding_url: str | None = settings.embedding_url
        self.local: LocalDeployment | None = None
        self.deployment: ContainerDeployment | None = None
        self.client: Client | None = None
        self.target: Target | None = None
        # --vllm-cpu-split, resolved when this process starts the server (None otherwise)
        self.cpu_plan: cpu_split.Plan | None = None
        self._affinity_before: frozenset[int] | None = None
        self._worker_secrets: list[Secret] = []  # what the controller handed this worker
        if settings.api_key is not None:  # redacted from every output until unconfigure
            untrusted.register(settings.api_key)
        # typed measurements ride on every test report (to the controller under xdist)
        config.pluginmanager.register(measurements, "vllm-conformance-measurements")

    # -- lifecycle ---------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Start the server if asked, then make sure the target is ready, before xdist forks."""
        if self.config.option.collectonly:
            return
        worker_input = getattr(self.config, "workerinput", None)
        if worker_input is not None and WORKER_URLS_KEY in worker_input:
            self.urls = tuple(worker_input[WORKER_URLS_KEY])
            replicas = worker_input.get(WORKER_REPLICAS_KEY)
            self.replicas = tuple(replicas) if replicas else None
            self.embedding_url = worker_input.get(WORKER_EMBEDDING_URL_KEY) or self.embedding_url
            if worker_input.get(WORKER_CPUS_KEY):  # xdist workers keep to the harness CPUs
                self._pin_harness(frozenset(worker_input[WORKER_CPUS_KEY]))
            for value in worker_input.get(WORKER_SECRETS_KEY, ()):
                self._worker_secrets.append(Secret(value))
                untrusted.register(self._worker_secrets[-1])
        elif self.settings.serve is not None:
            self.cpu_plan = cpu_split.plan(self.settings.cpu_split, cpu_split.available_cpus())
            self._start_local()
            self._pin_harness(self._harness_cpus)
        elif self.settings.container.image is not None:
            self.cpu_plan = cpu_split.container_plan(
                self.settings.cpu_split, cpu_split.available_cpus(), os.environ.get("DOCKER_HOST")
            )
            started_embedding_url = self._start_containers()
            self.embedding_url = self.settings.embedding_url or started_embedding_url
            self._pin_harness(self._harness_cpus)
        self.client = Client(
            AsyncClient(self.urls[0], self.settings.api_key, self.settings.timeout)
        )
        try:
            self.target = self.client.run(
                discover(
                    self.client.aio,
                    self.urls,
                    model=self.settings.model,
                    ready_within_s=self.settings.ready_timeout,
                    refused_grace_s=None if self.settings.ready_timeout_given else REFUSED_GRACE_S,
                    embedding_url=self.embedding_url,
                    embedding_model=self.settings.embedding_model,
                    replicas=self.replicas,
                )
            )
        except NotReady as exc:
            raise _usage_error(exc) from None
        self.config.hook.pytest_vllm_target_ready(target=self.target)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Hand xdist workers the URLs, so they test the server this process started."""
        node.workerinput[WORKER_URLS_KEY] = list(self.urls)
        node.workerinput[WORKER_CPUS_KEY] = sorted(self._harness_cpus or ())
        node.workerinput[WORKER_REPLICAS_KEY] = list(self.replicas or ())
        node.workerinput[WORKER_EMBEDDING_URL_KEY] = self.embedding_url
        if self.deployment is not None:
            node.workerinput[WORKER_SECRETS_KEY] = [
                secret.reveal() for secret in self.deployment.secrets
            ]

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._affinity_before is not None:  # an in-process run (pytester) ends unpinned
            cpu_split.pin_process(self._affinity_before)
            self._affinity_before = None
        if self.local is not None:  # first: a SIGTERM now must not skip the stop
            self._stop_local(self.local)
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.deployment is not None:
            self.deployment.stop()
            self._say(
                "vllm-conformance: containers removed; their logs are in "
                f"{self.settings.output_dir}"
            )
            for secret in self.deployment.secrets:
                untrusted.unregister(secret)
            self.deployment = None
        for secret in self._worker_secrets:
            untrusted.unregister(secret)
        self._worker_secrets = []
        if self.settings.api_key is not None:
            untrusted.unregister(self.settings.api_key)

    def _start_local(self) -> None:
        """Start --vllm-serve's processes: the generation server(s), the embedding server,
        the router; every one is stopped again if any fails to start."""
        self.local = LocalDeployment(
            self.settings, self._say, self._edit_command, cpus=self._server_cpus
        )
        try:
            started = self.local.start()
        except ServerStartError as exc:
            self._stop_local(self.local)
            raise _usage_error(exc) from None
        except BaseException:  # Ctrl-C, SIGTERM: stopped already; say where the logs are
            self._stop_local(self.local)
            raise
        self.urls = (started.url,)
        self.replicas = started.replicas
        self.embedding_url = started.embedding_url or self.settings.embedding_url

    def _stop_local(self, local: LocalDeployment) -> None:
        """Stop every local process (again: safe), redact and name each log."""
        self.local = None
        local.stop()
        for process in local.processes:
            if process.spawned_at:  # it ran, so its log is this run's
                untrusted.redact_file(process.log_path)
                self._say(
                    f"vllm-conformance: {process.label} stopped; its log is {process.log_path}"
                )

    def _start_containers(self) -> str | None:
        """Start --vllm-image's containers; return the embeddings URL of a split topology."""
        from pytest_vllm_conformance.target.container import ContainerStartError
        from pytest_vllm_conformance.target.launch import ContainerDeployment

        self.deployment = ContainerDeployment(self.settings, self._say, self._server_cpus)
        try:
            url, embedding_url = self.deployment.start()
        except ContainerStartError as exc:
            self.deployment = None
            raise _usage_error(exc) from None
        for secret in self.deployment.secrets:  # e.g. HF_TOKEN, given to the containers
            untrusted.register(secret)
        self.urls = (url,)
        return embedding_url

    @property
    def _server_cpus(self) -> frozenset[int] | None:
        split = self.cpu_plan.split if self.cpu_plan is not None else None
        return split.server if split is not None else None

    @property
    def _harness_cpus(self) -> frozenset[int] | None:
        split = self.cpu_plan.split if self.cpu_plan is not None else None
        return split.harness if split is not None else None

    def _pin_harness(self, cpus: frozenset[int] | None) -> None:
        """Keep this process (every thread, and what it starts later) on the harness CPUs."""
        if not cpus:  # nothing to pin (and never off Linux: no split is planned there)
            return
        self._affinity_before = cpu_split.available_cpus()
        try:
            cpu_split.pin_process(cpus)
        except OSError as exc:  # e.g. a CPU taken away meanwhile: measure unpinned, say so
            self._affinity_before = None
            self._say(
                f"vllm-conformance: could not pin the harness to CPU(s) "
                f"{format_cpus(cpus)} ({exc.strerror}); it runs unpinned"
            )

    @property
    def server_pid(self) -> int | None:
        """The main process of a server this run started (a process or a local container)."""
        if self.local is not None:
            return self.local.pid
        return self.deployment.pid if self.deployment is not None else None

    @property
    def topology(self) -> Topology | None:
        """The two-instance service this run started (local or containers), or None."""
        if self.settings.container.topology != "split":
            return None
        return self.local if self.local is not None else self.deployment

    def started_properties(self) -> list[tuple[str, str]]:
        """What this run started, for the header and the JUnit properties: the topology,
        the generation replicas and the embedding model (nothing for a server found)."""
        if self.local is None and self.deployment is None:
            return []
        s = self.settings
        props = [("vllm_topology", s.container.topology)]
        if self.local is not None:
            props.append(("vllm_serve_replicas", str(s.serve_replicas)))
        if self.embedding_url is not None or s.container.topology == "split":
            props.append(("vllm_embedding_model", s.embedding_model or ""))
        return props

    # -- reporting ---------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        t = self.target
        if t is None:
            return []
        shown = self.settings.profile if self.bitwise_logprobs else self.profile
        lines = [
            f"vllm-conformance: {t.display_url} ({t.engine.describe()}), model {t.model}, "
            f"profile {shown}"
        ]
        if len(t.replicas) > 1:
            lines.append(
                "vllm-conformance: replicas " + ", ".join(redact_url(u) for u in t.replicas)
            )
        if started := self.started_properties():
            lines.append(
                "vllm-conformance: started "
                + ", ".join(f"{name.removeprefix('vllm_')} {value}" for name, value in started)
            )
        if self.cpu_plan is not None:
            lines.append(f"vllm-conformance: CPU split: {self.cpu_plan.describe()}")
        return [untrusted.line(line, untrusted.FIELD_LIMIT) for line in lines]

    @property
    def profile(self) -> str:
        """The schema profile: 'openai' or 'vllm' ('batch-invariant' validates as 'vllm')."""
        if self.settings.profile == "batch-invariant":
            return "vllm"
        if self.settings.profile != "auto" or self.target is None:
            return self.settings.profile
        return "vllm" if self.target.engine.name == "vllm" else "openai"

    @property
    def bitwise_logprobs(self) -> bool:
        """Whether the determinism suite requires bitwise-equal logprobs."""
        return self.settings.profile == "batch-invariant"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, Any, Any]:
        """Show check failures and client errors as their own clear text, not a traceback."""
        report = yield
        exc = call.excinfo.value if call.excinfo is not None else None
        if isinstance(exc, CheckFailure | ClientError):
            from pytest_vllm_conformance.report.results import failure_properties

            make_safe(exc)
            props = safe_properties(failure_properties(exc))
            report.user_properties.extend(props)  # this report's copy, for the JSON
            item.user_properties.extend(props)  # the teardown report's, which JUnit writes
            text = exc.render() if isinstance(exc, CheckFailure) else render_client_error(exc)
            notes = getattr(exc, "__notes__", [])  # Hypothesis: the example that failed
            report.longrepr = "\n".join([text, *notes])
        safe_report(report)
        item.user_properties[:] = safe_properties(item.user_properties)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the controller, reports from xdist workers are made safe again, before the
        terminal and JUnit see them: workers may not know every secret (idempotent)."""
        safe_report(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """A collection error quoting a server is shown safe too."""
        safe_report(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_warning_recorded(self, warning_message: Any) -> None:
        """A warning quoting a server is shown safe, like every other text from it."""
        message = warning_message.message
        if isinstance(message, Warning):
            text = str(message)
            cleaned = untrusted.safe(text)
            if cleaned != text:
                message.args = (cleaned,)
        elif isinstance(message, str):
            warning_message.message = untrusted.safe(message)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Make the JUnit file's run properties (model, version, ...) safe before it is written."""
        try:
            from _pytest.junitxml import xml_key  # pytest's LogXML, where --junitxml collects
        except ImportError:  # pragma: no cover - a pytest that moved it
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            xml.global_properties[:] = [
                (untrusted.line(name), untrusted.line(value))
                for name, value in xml.global_properties
            ]

    # -- helpers -----------------------------------------------------------------------------
    def _edit_command(self, command: list[str], env: dict[str, str]) -> None:
        self.config.hook.pytest_vllm_server_command(
            settings=self.settings, command=command, env=env
        )

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(untrusted.safe(line))


def _usage_error(exc: Exception) -> pytest.UsageError:
    """The start-up error, safe for the terminal: no key, no escapes, a bounded length."""
    return pytest.UsageError(untrusted.safe(str(exc), untrusted.USAGE_LIMIT))


def make_safe(exc: CheckFailure | ClientError) -> None:
    """Make a failure's every field safe, in place (each member of a group too)."""
    if isinstance(exc, FailureGroup):
        for failure, _ in exc.failures:
            make_safe(failure)
    if isinstance(exc, CheckFailure):  # shown one per line, but the detail (tables, evidence)
        exc.title = untrusted.line(exc.title)
        for name in ("expected", "received", "path", "curl"):
            setattr(exc, name, untrusted.line(getattr(exc, name), untrusted.FIELD_LIMIT))
        exc.detail = untrusted.safe(exc.detail)
    else:
        exc.message = untrusted.line(exc.message, untrusted.FIELD_LIMIT)
        exc.curl = untrusted.line(exc.curl, untrusted.FIELD_LIMIT)


def safe_properties(props: Sequence[tuple[str, object]]) -> list[tuple[str, object]]:
    """Properties with safe names and values; numbers stay numbers (a NaN too: JUnit writes
    it as text, the JSON as null), lists and maps stay lists and maps of safe values."""
    out: list[tuple[str, object]] = []
    for prop in props:
        if not (isinstance(prop, tuple) and len(prop) == 2):
            out.append(prop)  # not pytest's (name, value): left for pytest to judge
            continue
        name, value = prop
        if not (isinstance(value, int | float) and not isinstance(value, bool)):
            value = untrusted.clean(value)
        out.append((untrusted.line(name), value))
    return out


def safe_report(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Every text of a report made safe: its failure, skip reason, sections and properties.

    A longrepr that needs no change keeps its structure (pytest's own formatting of it).
    """
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        report.longrepr = (
            longrepr[0],
            longrepr[1],
            untrusted.line(longrepr[2], untrusted.FIELD_LIMIT),
        )
    elif longrepr is not None:
        text = str(longrepr)
        cleaned = untrusted.safe(text, untrusted.TEXT_LIMIT)
        if cleaned != text:
            report.longrepr = cleaned
    report.sections = [
        (untrusted.line(title), untrusted.safe(content, untrusted.TEXT_LIMIT))
        for title, content in report.sections
    ]
    if not isinstance(report, pytest.TestReport):
        return
    report.user_properties = safe_properties(list(report.user_properties))
    measured = getattr(report, measurements.REPORT_ATTR, None)
    if measured is not None:  # a worker may not know every secret
        setattr(report, measurements.REPORT_ATTR, untrusted.clean(measured))
    if isinstance(getattr(report, "wasxfail", None), str):
        report.wasxfail = untrusted.line(report.wasxfail, untrusted.FIELD_LIMIT)
