"""Command-line options, their ini twins, and the validated :class:`Settings` built from them.

Every option lives in one group with the ``--vllm-`` prefix. Values from the command
line win over ini values, which win over environment variables and defaults. All
validation happens in :meth:`Settings.from_config`, so a bad value is one
``pytest.UsageError`` sentence whether it came from the command line or an ini file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pytest_vllm_conformance.config import container_options, perf_options
from pytest_vllm_conformance.config.validate import choice, count, readable_file, seconds
from pytest_vllm_conformance.secrets import Secret
from pytest_vllm_conformance.target import cpu_split

PROFILES = ("auto", "openai", "vllm", "batch-invariant")
SUITE_MODES = ("auto", "on", "off")
TINY = "tiny"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_READY_TIMEOUT_S = 10.0
REFUSED_GRACE_S = 2.0
DEFAULT_SERVE_TIMEOUT_S = 600.0
DEFAULT_OUTPUT_DIR = "reports"
DEFAULT_EXAMPLES = 20
DEFAULT_DETERMINISM_REQUESTS = 100
DEFAULT_DETERMINISM_CONCURRENCY = 10
API_KEY_ENV_VARS = ("VLLM_API_KEY", "OPENAI_API_KEY")


def add_options(parser: pytest.Parser) -> None:
    """Register the ``vllm-conformance`` option group and its ini twins."""
    group = parser.getgroup("vllm-conformance", "OpenAI-compatible server conformance")
    group.addoption(
        "--vllm-url", action="append", default=None, metavar="URL",
        help="base URL of the server under test, http(s)://host[:port]; repeat for replicas "
             "of one deployment. Default: none (ini: vllm_url).",
    )
    group.addoption(
        "--vllm-serve", default=None, metavar="MODEL",
        help=f"start a local vLLM server for MODEL (a directory or a name; '{TINY}' builds a "
             "tiny random-weight model, no download) and test it. Default: none (ini: vllm_serve).",
    )
    group.addoption(
        "--vllm-serve-arg", action="append", default=None, metavar="ARG",
        help="extra argument for the started vLLM server (or the --vllm-image container's "
             "command), e.g. --vllm-serve-arg=--max-num-seqs=8; "
             "repeatable. Default: none (ini: vllm_serve_args).",
    )
    group.addoption(
        "--vllm-serve-python", default=None, metavar="PATH",
        help="Python interpreter that has vllm installed. Default: this interpreter "
             "(ini: vllm_serve_python).",
    )
    group.addoption(
        "--vllm-serve-timeout", default=None, metavar="SECONDS",
        help="how long a started server or container may take to become healthy. "
             f"Default: {DEFAULT_SERVE_TIMEOUT_S:g} (ini: vllm_serve_timeout).",
    )
    group.addoption(
        "--vllm-cpu-split", default=None, metavar="SPLIT",
        help="when the plugin starts the server (--vllm-serve, --vllm-image), keep the "
             "harness off its CPUs: 'auto' gives the harness the last CPU of 2-7 (the last "
             "two of 8 or more) and the server, with its OpenMP threads, the rest; 'off' "
             "pins nothing; or SERVER_CPUS/HARNESS_CPUS like 0-5/6,7. "
             "Default: auto (ini: vllm_cpu_split).",
    )
    group.addoption(
        "--vllm-api-key", default=None, metavar="KEY",
        help="API key sent as a bearer token; never written to any report or log. "
             "Default: $VLLM_API_KEY, then $OPENAI_API_KEY, else none.",
    )
    group.addoption(
        "--vllm-model", default=None, metavar="NAME",
        help="model to test. Default: the first id listed by /v1/models (ini: vllm_model).",
    )
    group.addoption(
        "--vllm-embedding-url", default=None, metavar="URL",
        help="server that answers /v1/embeddings, when not the main one. "
             "Default: the main URL (ini: vllm_embedding_url).",
    )
    group.addoption(
        "--vllm-embedding-model", default=None, metavar="NAME",
        help="model used for embeddings. Default: none, embeddings tests skip with a reason "
             "(ini: vllm_embedding_model).",
    )
    group.addoption(
        "--vllm-timeout", default=None, metavar="SECONDS",
        help="longest any single request may take, streams included. "
             f"Default: {DEFAULT_TIMEOUT_S:g} (ini: vllm_timeout).",
    )
    group.addoption(
        "--vllm-ready-timeout", default=None, metavar="SECONDS",
        help="how long to wait for a --vllm-url server to answer before giving up; when it is "
             "not set, a refused connection (nothing listening) gives up after "
             f"{REFUSED_GRACE_S:g} s. "
             f"Default: {DEFAULT_READY_TIMEOUT_S:g} (ini: vllm_ready_timeout).",
    )
    group.addoption(
        "--vllm-profile", default=None, metavar="NAME",
        help=f"conformance profile, one of {', '.join(PROFILES)}: 'openai' is the spec as "
             "written, 'vllm' adds vLLM's documented allowances, 'batch-invariant' is 'vllm' "
             "plus bitwise-equal logprobs in the determinism suite, 'auto' picks by engine. "
             "Default: auto (ini: vllm_profile).",
    )
    group.addoption(
        "--vllm-suites", default=None, metavar="MODE",
        help=f"collect the bundled suites, one of {', '.join(SUITE_MODES)}: 'auto' collects "
             "them when a target is given and no test path is named. Default: auto "
             "(ini: vllm_suites).",
    )
    group.addoption(
        "--vllm-examples", default=None, metavar="N",
        help="how many requests Hypothesis generates per property test. "
             f"Default: {DEFAULT_EXAMPLES} (ini: vllm_examples).",
    )
    group.addoption(
        "--vllm-determinism-requests", default=None, metavar="N",
        help="identical requests per prompt in the determinism burst. "
             f"Default: {DEFAULT_DETERMINISM_REQUESTS} (ini: vllm_determinism_requests).",
    )
    group.addoption(
        "--vllm-determinism-concurrency", default=None, metavar="C",
        help="requests in flight at once in the determinism burst. "
             f"Default: {DEFAULT_DETERMINISM_CONCURRENCY} (ini: vllm_determinism_concurrency).",
    )
    group.addoption(
        "--vllm-prompts", default=None, metavar="FILE",
        help="JSONL prompt set for the determinism suite, one {\"prompt\": ...} per line "
             "(optional \"max_tokens\"). Default: the built-in set of varied lengths "
             "(ini: vllm_prompts).",
    )
    group.addoption(
        "--vllm-shared-server", action="store_true", default=None,
        help="the server also serves traffic other than this run's: a running-requests gauge "
             "above 0 while this run is idle is then a note (a warning and a test property), "
             "not a failure. Default: off, the server is this run's alone "
             "(ini: vllm_shared_server).",
    )
    group.addoption(
        "--vllm-output-dir", default=None, metavar="DIR",
        help="where server logs and reports are written. "
             f"Default: {DEFAULT_OUTPUT_DIR} (ini: vllm_output_dir).",
    )
    perf_options.add_rows(group, parser, (
        ("json", "PATH", "write the results as JSON (schema pytest-vllm-conformance/results/1) "
         "to PATH; 'none' writes nothing", "results.json in the output dir"),
        ("html", "PATH", "write the self-contained HTML report to PATH; 'none' writes nothing",
         "report.html in the output dir"),
        ("junit-test-properties", "MODE", "write each test's measurements into --junitxml as "
         "testcase properties: 'on', or 'off' for a file that validates against the xunit2 "
         "schema (pytest documents that testcase properties break it); the JSON has them "
         "either way", "on"),
        ("openmetrics", "PATH", "write the measurements as OpenMetrics text to PATH; 'none' "
         "writes nothing", "metrics.txt in the output dir"),
        ("pushgateway", "URL", "also push them to this Prometheus Pushgateway", "none"),
        ("pool-id", "ID", "the pool_id label of the exported metrics", "default"),
        ("replica-id", "ID", "the replica_id label of the exported metrics", "the target's "
         "host:port"),
    ))
    perf_options.add_options(group, parser)
    container_options.add_options(group, parser)
    parser.addini("vllm_url", "base URLs of the server under test", type="linelist", default=[])
    parser.addini("vllm_serve", "model for a locally started vLLM server", default="")
    parser.addini("vllm_serve_args", "extra arguments for the started server", type="args",
                  default=[])
    parser.addini("vllm_serve_python", "interpreter that has vllm installed", default="")
    parser.addini("vllm_serve_timeout", "start-up limit in seconds", default="")
    parser.addini("vllm_cpu_split", "CPUs of a started server and of the harness",
                  default="")
    parser.addini("vllm_shared_server", "the server also serves other traffic", type="bool",
                  default=False)
    for name, text in (
        ("vllm_model", "model to test"),
        ("vllm_embedding_url", "server answering /v1/embeddings"),
        ("vllm_embedding_model", "model used for embeddings"),
        ("vllm_timeout", "per-request limit in seconds"),
        ("vllm_ready_timeout", "readiness limit in seconds"),
        ("vllm_profile", "conformance profile"),
        ("vllm_suites", "collect the bundled suites: auto, on or off"),
        ("vllm_output_dir", "folder for logs and reports"),
        ("vllm_examples", "requests generated per property test"),
        ("vllm_determinism_requests", "identical requests per prompt in the burst"),
        ("vllm_determinism_concurrency", "requests in flight in the burst"),
        ("vllm_prompts", "JSONL prompt set for the determinism suite"),
    ):
        parser.addini(name, text, default="")


@dataclass(frozen=True)
class Settings:
    """The validated options of one run."""

    urls: tuple[str, ...] = ()
    serve: str | None = None
    serve_args: tuple[str, ...] = ()
    serve_python: str = sys.executable
    serve_timeout: float = DEFAULT_SERVE_TIMEOUT_S
    cpu_split: str = "auto"
    api_key: Secret | None = None
    model: str | None = None
    embedding_url: str | None = None
    embedding_model: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    ready_timeout: float = DEFAULT_READY_TIMEOUT_S
    ready_timeout_given: bool = False
    profile: str = "auto"
    suites: str = "auto"
    examples: int = DEFAULT_EXAMPLES
    determinism_requests: int = DEFAULT_DETERMINISM_REQUESTS
    determinism_concurrency: int = DEFAULT_DETERMINISM_CONCURRENCY
    prompts: Path | None = None
    shared_server: bool = False
    output_dir: Path = field(default_factory=lambda: Path(DEFAULT_OUTPUT_DIR))
    perf: perf_options.PerfSettings = field(default_factory=perf_options.PerfSettings)
    json_path: Path | None = None
    html_path: Path | None = None
    openmetrics_path: Path | None = None
    junit_test_properties: bool = True
    pushgateway: str | None = None
    pool_id: str = "default"
    replica_id: str | None = None
    container: container_options.ContainerSettings = field(
        default_factory=container_options.ContainerSettings)

    @property
    def has_target(self) -> bool:
        return bool(self.urls) or self.serve is not None or self.container.image is not None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        """Read and validate every option; raise ``pytest.UsageError`` on the first bad one."""

        def pick(option: str, ini: str) -> Any:
            value = config.getoption(option)
            return value if value not in (None, []) else (config.getini(ini) or None)

        urls = tuple(normalise_url(u, "--vllm-url") for u in pick("vllm_url", "vllm_url") or ())
        serve = pick("vllm_serve", "vllm_serve")
        root = Path(config.invocation_params.dir)
        container = container_options.ContainerSettings.read(pick, root)
        if sum(map(bool, (urls, serve, container.image))) > 1:
            raise pytest.UsageError("use one of --vllm-url, --vllm-serve and --vllm-image.")
        model = pick("vllm_model", "vllm_model")
        embedding_model = pick("vllm_embedding_model", "vllm_embedding_model")
        if container.image and not model:
            raise pytest.UsageError("--vllm-image needs --vllm-model=MODEL, the model the image "
                                    "is to serve (a Hugging Face id or a path in the image).")
        if container.topology == "split" and not embedding_model:
            raise pytest.UsageError("--vllm-topology=split needs --vllm-embedding-model=MODEL "
                                    "for its embedding server.")
        embedding_url = pick("vllm_embedding_url", "vllm_embedding_url")
        key = config.getoption("vllm_api_key") or next(
            (os.environ[v] for v in API_KEY_ENV_VARS if os.environ.get(v)), None
        )
        ready = pick("vllm_ready_timeout", "vllm_ready_timeout")
        output_dir = root / (pick("vllm_output_dir", "vllm_output_dir") or DEFAULT_OUTPUT_DIR)
        gateway = pick("vllm_pushgateway", "vllm_pushgateway")
        return cls(
            urls=urls,
            serve=serve,
            serve_args=tuple(pick("vllm_serve_arg", "vllm_serve_args") or ()),
            serve_python=pick("vllm_serve_python", "vllm_serve_python") or sys.executable,
            serve_timeout=seconds(pick("vllm_serve_timeout", "vllm_serve_timeout"),
                                   "--vllm-serve-timeout", DEFAULT_SERVE_TIMEOUT_S),
            cpu_split=cpu_split.validate(pick("vllm_cpu_split", "vllm_cpu_split")),
            api_key=Secret(key) if key else None,
            model=model,
            embedding_url=normalise_url(embedding_url, "--vllm-embedding-url")
            if embedding_url else None,
            embedding_model=embedding_model,
            timeout=seconds(pick("vllm_timeout", "vllm_timeout"), "--vllm-timeout",
                             DEFAULT_TIMEOUT_S),
            ready_timeout=seconds(ready, "--vllm-ready-timeout", DEFAULT_READY_TIMEOUT_S),
            ready_timeout_given=ready is not None,
            profile=choice(pick("vllm_profile", "vllm_profile"), "--vllm-profile", PROFILES),
            suites=choice(pick("vllm_suites", "vllm_suites"), "--vllm-suites", SUITE_MODES),
            examples=count(pick("vllm_examples", "vllm_examples"), "--vllm-examples",
                            DEFAULT_EXAMPLES),
            determinism_requests=count(
                pick("vllm_determinism_requests", "vllm_determinism_requests"),
                "--vllm-determinism-requests", DEFAULT_DETERMINISM_REQUESTS),
            determinism_concurrency=count(
                pick("vllm_determinism_concurrency", "vllm_determinism_concurrency"),
                "--vllm-determinism-concurrency", DEFAULT_DETERMINISM_CONCURRENCY),
            prompts=readable_file(pick("vllm_prompts", "vllm_prompts"), "--vllm-prompts", root),
            shared_server=bool(config.getoption("vllm_shared_server")
                               or config.getini("vllm_shared_server")),
            output_dir=output_dir,
            perf=perf_options.PerfSettings.read(pick),
            json_path=_out_path(pick("vllm_json", "vllm_json"), root, output_dir, "results.json"),
            html_path=_out_path(pick("vllm_html", "vllm_html"), root, output_dir, "report.html"),
            openmetrics_path=_out_path(pick("vllm_openmetrics", "vllm_openmetrics"), root,
                                       output_dir, "metrics.txt"),
            pushgateway=normalise_url(gateway, "--vllm-pushgateway") if gateway else None,
            pool_id=pick("vllm_pool_id", "vllm_pool_id") or "default",
            junit_test_properties=choice(
                pick("vllm_junit_test_properties", "vllm_junit_test_properties"),
                "--vllm-junit-test-properties", ("on", "off")) == "on",
            replica_id=pick("vllm_replica_id", "vllm_replica_id"),
            container=container,
        )


def normalise_url(raw: str, option: str) -> str:
    """Return ``scheme://host[:port][/prefix]`` without a trailing ``/`` or ``/v1``."""
    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise pytest.UsageError(
            f"{option} must be http(s)://host[:port], got {redact_url(text)!r}."
        )
    if parts.query or parts.fragment:
        raise pytest.UsageError(f"{option} must not carry a query or fragment.")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    netloc = parts.netloc.rsplit("@", 1)[-1]
    del port
    return f"{parts.scheme}://{netloc}{path}"


def redact_url(url: str) -> str:
    """Drop any user:password@ part so a URL can be printed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[-1]).geturl()


def _out_path(raw: Any, root: Path, output_dir: Path, default: str) -> Path | None:
    if raw is None:
        return output_dir / default
    return None if str(raw).strip().lower() == "none" else root / str(raw)
