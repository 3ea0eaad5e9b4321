"""Per-run state, registered as a plugin: the target, its client, a started server.

Imported only when a target is given, so ``pytest`` without one never loads the
client or touches the network.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vllm_conformance.client import AsyncClient, Client, ClientError
from pytest_vllm_conformance.failures import CheckFailure, render_client_error
from pytest_vllm_conformance.options import REFUSED_GRACE_S, Settings, redact_url
from pytest_vllm_conformance.server import LocalVllmServer, ServerStartError
from pytest_vllm_conformance.target import NotReady, Target, discover

if TYPE_CHECKING:
    from pytest_vllm_conformance.launch import ContainerDeployment

WORKER_URLS_KEY = "vllm_conformance_urls"


class ConformanceSession:
    """Owns the server under test for one pytest run (controller and xdist workers alike)."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.urls: tuple[str, ...] = settings.urls
        self.server: LocalVllmServer | None = None
        self.deployment: ContainerDeployment | None = None
        self.client: Client | None = None
        self.target: Target | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Start the server if asked, then make sure the target is ready, before xdist forks."""
        if self.config.option.collectonly:
            return
        worker_input = getattr(self.config, "workerinput", None)
        embedding_url: str | None = None
        if worker_input is not None and WORKER_URLS_KEY in worker_input:
            self.urls = tuple(worker_input[WORKER_URLS_KEY])
        elif self.settings.serve is not None:
            self.server = LocalVllmServer(self.settings, self._edit_command, self._say)
            try:
                self.urls = (self.server.start(),)
            except ServerStartError as exc:
                raise pytest.UsageError(str(exc)) from None
        elif self.settings.container.image is not None:
            embedding_url = self._start_containers()
        self.client = Client(AsyncClient(self.urls[0], self.settings.api_key,
                                         self.settings.timeout))
        try:
            self.target = self.client.run(discover(
                self.client.aio, self.urls, model=self.settings.model,
                ready_within_s=self.settings.ready_timeout,
                refused_grace_s=None if self.settings.ready_timeout_given else REFUSED_GRACE_S,
                embedding_url=self.settings.embedding_url or embedding_url,
                embedding_model=self.settings.embedding_model,
            ))
        except NotReady as exc:
            raise pytest.UsageError(str(exc)) from None
        self.config.hook.pytest_vllm_target_ready(target=self.target)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Hand xdist workers the URLs, so they test the server this process started."""
        node.workerinput[WORKER_URLS_KEY] = list(self.urls)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.server is not None:
            self.server.stop()
            self._say(f"vllm-conformance: vLLM stopped; its log is {self.server.log_path}")
            self.server = None
        if self.deployment is not None:
            self.deployment.stop()
            self._say("vllm-conformance: containers removed; their logs are in "
                      f"{self.settings.output_dir}")
            self.deployment = None

    def _start_containers(self) -> str | None:
        """Start --vllm-image's containers; return the embeddings URL of a split topology."""
        from pytest_vllm_conformance.container import ContainerStartError
        from pytest_vllm_conformance.launch import ContainerDeployment

        self.deployment = ContainerDeployment(self.settings, self._say)
        try:
            url, embedding_url = self.deployment.start()
        except ContainerStartError as exc:
            self.deployment = None
            raise pytest.UsageError(str(exc)) from None
        self.urls = (url,)
        return embedding_url

    @property
    def server_pid(self) -> int | None:
        """The main process of a server this run started (a process or a local container)."""
        if self.server is not None and self.server.proc is not None:
            return self.server.proc.pid
        return self.deployment.pid if self.deployment is not None else None

    # -- reporting ---------------------------------------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        t = self.target
        if t is None:
            return []
        shown = self.settings.profile if self.bitwise_logprobs else self.profile
        lines = [f"vllm-conformance: {t.display_url} ({t.engine.describe()}), model {t.model}, "
                 f"profile {shown}"]
        if len(t.replicas) > 1:
            lines.append("vllm-conformance: replicas " +
                         ", ".join(redact_url(u) for u in t.replicas))
        return lines

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
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """Show check failures and client errors as their own clear text, not a traceback."""
        report = yield
        exc = call.excinfo.value if call.excinfo is not None else None
        if isinstance(exc, CheckFailure | ClientError):
            from pytest_vllm_conformance.results import failure_properties

            props = failure_properties(exc)
            report.user_properties.extend(props)  # this report's copy, for the JSON
            item.user_properties.extend(props)  # the teardown report's, which JUnit writes
            text = exc.render() if isinstance(exc, CheckFailure) else render_client_error(exc)
            notes = getattr(exc, "__notes__", [])  # Hypothesis: the example that failed
            report.longrepr = "\n".join([text, *notes])
        return report

    # -- helpers -----------------------------------------------------------------------------
    def _edit_command(self, command: list[str], env: dict[str, str]) -> None:
        self.config.hook.pytest_vllm_server_command(settings=self.settings, command=command,
                                                    env=env)

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)
