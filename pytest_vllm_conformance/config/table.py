"""Every option, declared once: its flag, ini twin, parser, default and help.

The plugin registers all of :data:`OPTIONS` in one ``vllm-conformance`` group, and
:func:`~pytest_vllm_conformance.config.run_settings.read_settings` builds the run's settings
from the same rows; the README's option reference comes from :func:`render_options_markdown`.
Values given on the command line win over ini values, which win over environment
variables (the API key only) and defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_vllm_conformance.config import parsers

PROFILES = ("auto", "openai", "vllm", "batch-invariant")
SUITE_MODES = ("auto", "on", "off")
TOPOLOGIES = ("single", "split")
BASELINE_CONFIRM = ("auto", "always", "off")
#: ``--vllm-serve=tiny`` builds a tiny random-weight model instead of loading one
TINY = "tiny"
#: the name the embedding server of ``--vllm-serve=tiny`` serves its model under
TINY_EMBED = "tiny-embed"
API_KEY_ENV_VARS = ("VLLM_API_KEY", "OPENAI_API_KEY")
#: without --vllm-ready-timeout, a refused connection (nothing listening) gives up this soon
REFUSED_GRACE_S = 2.0

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_READY_TIMEOUT_S = 10.0
DEFAULT_SERVE_TIMEOUT_S = 600.0
DEFAULT_OUTPUT_DIR = "reports"
DEFAULT_EXAMPLES = 20
DEFAULT_DETERMINISM_REQUESTS = 100
DEFAULT_DETERMINISM_CONCURRENCY = 10
DEFAULT_CONCURRENCY = (1, 8, 50)
DEFAULT_REQUESTS = 100
DEFAULT_RATE = 4.0
DEFAULT_BURSTINESS = 1.0
DEFAULT_WARMUP = 4
DEFAULT_MAX_TOKENS = 100
DEFAULT_MEMORY_DURATION_S = 60.0
DEFAULT_MEMORY_GROWTH = 100.0
DEFAULT_MEMORY_MIN_GROWTH = 32.0
DEFAULT_MEMORY_CONCURRENCY = 4
DEFAULT_ROUTER_IMAGE = "haproxy:2.8"
DEFAULT_SHM_SIZE = "8g"
DEFAULT_HF_CACHE = "~/.cache/huggingface"

GROUP = ("vllm-conformance", "OpenAI-compatible server conformance")


@dataclass(frozen=True)
class Reading:
    """What a parser may look at besides its raw value: its own flag, the folder pytest was
    started in, and the values read before it (by field)."""

    flag: str
    root: Path
    values: Mapping[str, Any]


Parse = Callable[[Any, Reading], Any]


def _by_flag(parse: Callable[[Any, str], Any]) -> Parse:
    """A parser that needs only the raw value and its flag."""
    return lambda raw, at: parse(raw, at.flag)


def _many(parse: Callable[[Any, str], Any]) -> Parse:
    """A repeatable option's values, each parsed."""
    return lambda raw, at: tuple(parse(item, at.flag) for item in raw)


_text = _by_flag(parsers.text)


@dataclass(frozen=True)
class Option:
    """One ``--vllm-NAME`` option and its ``vllm_NAME`` ini twin (if it has one)."""

    name: str  # the flag without --vllm-
    field: str  # the Settings attribute it sets; "perf.x" / "container.x" for a sub-setting
    metavar: str | None
    help: str  # what it does; the help adds "Default: ... (ini: ...)."
    default_text: str  # the default, as the help says it
    parse: Parse = _text
    default: Any = None  # the value when given nowhere
    derive_default: Callable[[Reading], Any] | None = None  # a default made from other values
    action: Literal["store", "append", "store_true"] = "store"
    ini: str | None = ""  # "" = vllm_NAME; None = no ini twin
    ini_type: Literal["string", "linelist", "args", "bool"] = "string"
    ini_help: str = ""  # the ini line's text; "" = the help
    env: tuple[str, ...] = ()  # environment variables read when given nowhere else
    given_field: str | None = None  # also record whether a value was given
    #: an empty command-line value (``--vllm-model=``) means not given; otherwise the
    #: parser judges it (``--vllm-timeout=`` is an error). An empty ini value is never given.
    empty_means_unset: bool = False

    @property
    def flag(self) -> str:
        return f"--vllm-{self.name}"

    @property
    def dest(self) -> str:
        return "vllm_" + self.name.replace("-", "_")

    @property
    def ini_name(self) -> str | None:
        return self.dest if self.ini == "" else self.ini

    @property
    def full_help(self) -> str:
        where = f" (ini: {self.ini_name})" if self.ini_name else ""
        return f"{self.help}. Default: {self.default_text}{where}."


def _out(file: str) -> Callable[[Reading], Path]:
    return lambda at: Path(at.values["output_dir"]) / file


def _hf_cache(raw: Any, at: Reading) -> Path | None:
    value = str(raw).strip()
    return None if value.lower() == "none" else at.root / Path(value).expanduser()


def _gpu_share(raw: Any, at: Reading) -> tuple[float, ...]:
    return parsers.gpu_shares(raw, at.flag, 2 if at.values["container.topology"] == "split" else 1)


def _serve_embedding(raw: Any, at: Reading) -> str | None:
    """The embedding server's model, or None for none: 'auto' is the tiny model when the
    generation server is the tiny one and no --vllm-embedding-url points elsewhere."""
    value = str(raw).strip()
    serve, elsewhere = at.values["serve"], at.values["embedding_url"]
    if value == "auto":
        return TINY if serve == TINY and not elsewhere else None
    if value == "off":
        return None
    if serve is None:
        raise pytest.UsageError(f"{at.flag} needs --vllm-serve=MODEL.")
    if elsewhere:
        raise pytest.UsageError(f"use one of --vllm-embedding-url and {at.flag}.")
    return value


def _served_embedding(model: str | None) -> str | None:
    """The model name the started embedding server answers to."""
    return TINY_EMBED if model == TINY else model


OPTIONS: tuple[Option, ...] = (
    # -- the target ---------------------------------------------------------------------------
    Option(
        "url",
        "urls",
        "URL",
        "base URL of the server under test, http(s)://host[:port]; "
        "repeat for replicas of one deployment",
        "none",
        _many(parsers.normalise_url),
        default=(),
        action="append",
        ini_type="linelist",
        ini_help="base URLs of the server under test",
    ),
    Option(
        "serve",
        "serve",
        "MODEL",
        f"start a local vLLM server for MODEL (a directory or a "
        f"name; '{TINY}' builds a tiny random-weight model, no download) and test it",
        "none",
        ini_help="model for a locally started vLLM server",
        empty_means_unset=True,
    ),
    Option(
        "serve-arg",
        "serve_args",
        "ARG",
        "extra argument for the started vLLM server (or "
        "the --vllm-image container's command), e.g. --vllm-serve-arg=--max-num-seqs=8; "
        "repeatable",
        "none",
        lambda raw, at: tuple(map(str, raw)),
        default=(),
        action="append",
        ini="vllm_serve_args",
        ini_type="args",
        ini_help="extra arguments for the started server",
    ),
    Option(
        "serve-python",
        "serve_python",
        "PATH",
        "Python interpreter that has vllm installed",
        "this interpreter",
        default=sys.executable,
        ini_help="interpreter that has vllm installed",
        empty_means_unset=True,
    ),
    Option(
        "serve-timeout",
        "serve_timeout",
        "SECONDS",
        "how long a started server or container may take to become healthy",
        f"{DEFAULT_SERVE_TIMEOUT_S:g}",
        _by_flag(parsers.seconds),
        DEFAULT_SERVE_TIMEOUT_S,
        ini_help="start-up limit in seconds",
    ),
    Option(
        "cpu-split",
        "cpu_split",
        "SPLIT",
        "when the plugin starts the server (--vllm-serve, "
        "--vllm-image), keep the harness off its CPUs: 'auto' gives the harness the last CPU "
        "of 2-7 (the last two of 8 or more) and the server, with its OpenMP threads, the "
        "rest; 'off' pins nothing; or SERVER_CPUS/HARNESS_CPUS like 0-5/6,7",
        "auto",
        _by_flag(parsers.cpu_split),
        "auto",
        ini_help="CPUs of a started server and of the harness",
    ),
    Option(
        "api-key",
        "api_key",
        "KEY",
        "API key sent as a bearer token; never written to any report or log",
        "$VLLM_API_KEY, then $OPENAI_API_KEY, else none",
        _by_flag(parsers.secret),
        ini=None,
        env=API_KEY_ENV_VARS,
        empty_means_unset=True,
    ),
    Option(
        "model",
        "model",
        "NAME",
        "model to test",
        "the first id listed by /v1/models",
        ini_help="model to test",
        empty_means_unset=True,
    ),
    Option(
        "embedding-url",
        "embedding_url",
        "URL",
        "server that answers /v1/embeddings, when not the main one",
        "the main URL",
        _by_flag(parsers.normalise_url),
        ini_help="server answering /v1/embeddings",
        empty_means_unset=True,
    ),
    Option(
        "serve-embedding",
        "serve_embedding",
        "MODEL",
        "with --vllm-serve, also start a vLLM embedding server (pooling runner) for MODEL; "
        f"'auto' starts one on the tiny model for --vllm-serve={TINY} unless "
        "--vllm-embedding-url is given, 'off' starts none",
        "auto",
        _serve_embedding,
        derive_default=lambda at: _serve_embedding("auto", at),
        ini_help="model of the started embedding server, auto or off",
        empty_means_unset=True,
    ),
    Option(
        "serve-replicas",
        "serve_replicas",
        "N",
        "with --vllm-serve, start N identical generation servers (same arguments and seed, "
        "each its own port): the replicas the determinism suite compares",
        "1",
        _by_flag(parsers.integer),
        1,
        ini_help="identical generation servers started",
    ),
    Option(
        "embedding-model",
        "embedding_model",
        "NAME",
        "model used for embeddings",
        f"the started embedding server's ('{TINY_EMBED}' for the tiny model), else none: "
        "embeddings tests skip with a reason",
        derive_default=lambda at: _served_embedding(at.values["serve_embedding"]),
        ini_help="model used for embeddings",
        empty_means_unset=True,
    ),
    Option(
        "timeout",
        "timeout",
        "SECONDS",
        "longest any single request may take, streams included",
        f"{DEFAULT_TIMEOUT_S:g}",
        _by_flag(parsers.seconds),
        DEFAULT_TIMEOUT_S,
        ini_help="per-request limit in seconds",
    ),
    Option(
        "ready-timeout",
        "ready_timeout",
        "SECONDS",
        "how long to wait for a --vllm-url "
        "server to answer before giving up; when it is not set, a refused connection "
        f"(nothing listening) gives up after {REFUSED_GRACE_S:g} s",
        f"{DEFAULT_READY_TIMEOUT_S:g}",
        _by_flag(parsers.seconds),
        DEFAULT_READY_TIMEOUT_S,
        given_field="ready_timeout_given",
        ini_help="readiness limit in seconds",
    ),
    # -- what runs, and how -------------------------------------------------------------------
    Option(
        "profile",
        "profile",
        "NAME",
        f"conformance profile, one of {', '.join(PROFILES)}: "
        "'openai' is the spec as written, 'vllm' adds vLLM's documented allowances, "
        "'batch-invariant' is 'vllm' plus bitwise-equal logprobs in the determinism suite, "
        "'auto' picks by engine",
        "auto",
        lambda raw, at: parsers.choice(raw, at.flag, PROFILES),
        "auto",
        ini_help="conformance profile",
    ),
    Option(
        "suites",
        "suites",
        "MODE",
        f"collect the bundled suites, one of "
        f"{', '.join(SUITE_MODES)}: 'auto' collects them when a target is given and no test "
        "path is named",
        "auto",
        lambda raw, at: parsers.choice(raw, at.flag, SUITE_MODES),
        "auto",
        ini_help="collect the bundled suites: auto, on or off",
    ),
    Option(
        "examples",
        "examples",
        "N",
        "how many requests Hypothesis generates per property test",
        str(DEFAULT_EXAMPLES),
        _by_flag(parsers.integer),
        DEFAULT_EXAMPLES,
        ini_help="requests generated per property test",
    ),
    Option(
        "determinism-requests",
        "determinism_requests",
        "N",
        "identical requests per prompt in the determinism burst",
        str(DEFAULT_DETERMINISM_REQUESTS),
        _by_flag(parsers.integer),
        DEFAULT_DETERMINISM_REQUESTS,
        ini_help="identical requests per prompt in the burst",
    ),
    Option(
        "determinism-concurrency",
        "determinism_concurrency",
        "C",
        "requests in flight at once in the determinism burst",
        str(DEFAULT_DETERMINISM_CONCURRENCY),
        _by_flag(parsers.integer),
        DEFAULT_DETERMINISM_CONCURRENCY,
        ini_help="requests in flight in the burst",
    ),
    Option(
        "prompts",
        "prompts",
        "FILE",
        "JSONL prompt set for the determinism suite, one "
        '{"prompt": ...} per line (optional "max_tokens")',
        "the built-in set of varied lengths",
        lambda raw, at: parsers.readable_file(raw, at.flag, at.root),
        ini_help="JSONL prompt set for the determinism suite",
    ),
    Option(
        "shared-server",
        "shared_server",
        None,
        "the server also serves traffic other than "
        "this run's: a running-requests gauge above 0 while this run is idle is then a note "
        "(a warning and a test property), not a failure",
        "off, the server is this run's alone",
        lambda raw, at: bool(raw),
        False,
        action="store_true",
        ini_type="bool",
        ini_help="the server also serves other traffic",
    ),
    # -- reports ------------------------------------------------------------------------------
    Option(
        "output-dir",
        "output_dir",
        "DIR",
        "where server logs and reports are written",
        DEFAULT_OUTPUT_DIR,
        lambda raw, at: at.root / str(raw).strip(),
        derive_default=lambda at: at.root / DEFAULT_OUTPUT_DIR,
        ini_help="folder for logs and reports",
        empty_means_unset=True,
    ),
    Option(
        "json",
        "json_path",
        "PATH",
        "write the results as JSON (schema "
        "pytest-vllm-conformance/results/1) to PATH; 'none' writes nothing",
        "results.json in the output dir",
        lambda raw, at: parsers.output_path(raw, at.root),
        derive_default=_out("results.json"),
        empty_means_unset=True,
    ),
    Option(
        "html",
        "html_path",
        "PATH",
        "write the self-contained HTML report to PATH; 'none' writes nothing",
        "report.html in the output dir",
        lambda raw, at: parsers.output_path(raw, at.root),
        derive_default=_out("report.html"),
        empty_means_unset=True,
    ),
    Option(
        "junit-test-properties",
        "junit_test_properties",
        "MODE",
        "write each test's "
        "measurements into --junitxml as testcase properties: 'on', or 'off' for a file "
        "that validates against the xunit2 schema (pytest documents that testcase "
        "properties break it); the JSON has them either way",
        "on",
        _by_flag(parsers.switch),
        True,
    ),
    Option(
        "openmetrics",
        "openmetrics_path",
        "PATH",
        "write the measurements as OpenMetrics text to PATH; 'none' writes nothing",
        "metrics.txt in the output dir",
        lambda raw, at: parsers.output_path(raw, at.root),
        derive_default=_out("metrics.txt"),
        empty_means_unset=True,
    ),
    Option(
        "pushgateway",
        "pushgateway",
        "URL",
        "also push them to this Prometheus Pushgateway",
        "none",
        _by_flag(parsers.normalise_url),
        empty_means_unset=True,
    ),
    Option(
        "pool-id",
        "pool_id",
        "ID",
        "the pool_id label of the exported metrics",
        "default",
        default="default",
        empty_means_unset=True,
    ),
    Option(
        "replica-id",
        "replica_id",
        "ID",
        "the replica_id label of the exported metrics",
        "the target's host:port",
        empty_means_unset=True,
    ),
    # -- the latency and memory suites --------------------------------------------------------
    Option(
        "latency-concurrency",
        "perf.concurrency",
        "LEVELS",
        "comma-separated concurrency levels of the closed-loop sweep",
        ",".join(map(str, DEFAULT_CONCURRENCY)),
        _by_flag(parsers.levels),
        DEFAULT_CONCURRENCY,
        empty_means_unset=True,
    ),
    Option(
        "latency-requests",
        "perf.requests",
        "N",
        "measured requests per load level",
        str(DEFAULT_REQUESTS),
        _by_flag(parsers.integer),
        DEFAULT_REQUESTS,
    ),
    Option(
        "latency-duration",
        "perf.duration_s",
        "SECONDS",
        "also end a load level after this long",
        "none",
        _by_flag(parsers.number),
        empty_means_unset=True,
    ),
    Option(
        "latency-rate",
        "perf.rate",
        "RPS",
        "open-loop arrival rate, requests per second",
        f"{DEFAULT_RATE:g}",
        _by_flag(parsers.number),
        DEFAULT_RATE,
    ),
    Option(
        "latency-burstiness",
        "perf.burstiness",
        "F",
        "gamma shape of the arrivals: 1 is Poisson, below 1 burstier",
        f"{DEFAULT_BURSTINESS:g}",
        _by_flag(parsers.number),
        DEFAULT_BURSTINESS,
    ),
    Option(
        "latency-warmup",
        "perf.warmup",
        "N",
        "requests sent and not counted before each level",
        str(DEFAULT_WARMUP),
        lambda raw, at: parsers.integer(raw, at.flag, least=0),
        DEFAULT_WARMUP,
    ),
    Option(
        "latency-max-tokens",
        "perf.max_tokens",
        "N",
        "max_tokens of each measured completion",
        str(DEFAULT_MAX_TOKENS),
        _by_flag(parsers.integer),
        DEFAULT_MAX_TOKENS,
    ),
    Option(
        "slo",
        "perf.slo",
        "KEY=VALUE,...",
        "latency and throughput limits, e.g. "
        "ttft_p95_ms=500,e2e_p99_ms=8000 ('none' drops the defaults: e2e_p95_ms=5000, "
        "embeddings_p95_ms=500, embeddings_per_s=100, error_rate=0; for --vllm-serve=tiny, "
        "sized for a 2-core CPU, embeddings_p95_ms=1000, embeddings_per_s=50)",
        "the defaults",
        _by_flag(parsers.slo),
        derive_default=lambda at: {},
        empty_means_unset=True,
    ),
    Option(
        "memory-duration",
        "perf.memory_duration_s",
        "DURATION",
        "how long the memory test loads the server (90s, 10m, 24h)",
        f"{DEFAULT_MEMORY_DURATION_S:g}s",
        _by_flag(parsers.memory_duration),
        DEFAULT_MEMORY_DURATION_S,
        empty_means_unset=True,
    ),
    Option(
        "memory-max-growth",
        "perf.memory_max_growth",
        "MB_PER_HOUR",
        "memory growth that "
        "fails the memory test when the fitted slope's whole 95% interval is above it",
        f"{DEFAULT_MEMORY_GROWTH:g}",
        lambda raw, at: parsers.number(raw, at.flag, zero=True),
        DEFAULT_MEMORY_GROWTH,
    ),
    Option(
        "memory-min-growth",
        "perf.memory_min_growth",
        "MB",
        "growth over the measured "
        "window below which no leak is reported, whatever the rate (allocators grow in "
        "steps)",
        f"{DEFAULT_MEMORY_MIN_GROWTH:g}",
        lambda raw, at: parsers.number(raw, at.flag, zero=True),
        DEFAULT_MEMORY_MIN_GROWTH,
    ),
    Option(
        "memory-concurrency",
        "perf.memory_concurrency",
        "C",
        "requests in flight during the memory test",
        str(DEFAULT_MEMORY_CONCURRENCY),
        _by_flag(parsers.integer),
        DEFAULT_MEMORY_CONCURRENCY,
    ),
    Option(
        "latency-harness-tolerance",
        "perf.harness_tolerance_ms",
        "MS",
        "the least "
        "tolerance of the harness's timing self-check: a level is client-limited when its "
        "CPU wait per wake-up, event-loop lag p99 or blocked writes pass max(this, 5% of the "
        "level's smallest TTFT/E2E p50)",
        "2",
        _by_flag(parsers.number),
        empty_means_unset=True,
    ),
    Option(
        "latency-early-stop",
        "perf.early_stop",
        "on|off",
        "end a load level as soon as its "
        "SLO verdict is a sure miss (off: every planned request is sent)",
        "on",
        _by_flag(parsers.switch),
        True,
    ),
    # -- containers (--vllm-image) ------------------------------------------------------------
    Option(
        "image",
        "container.image",
        "IMAGE",
        "start this image through testcontainers and "
        "test it (needs --vllm-model; containers/vllm/Dockerfile builds the batch-invariant "
        "vLLM image)",
        "none",
        empty_means_unset=True,
    ),
    Option(
        "topology",
        "container.topology",
        "NAME",
        "'single': one server; 'split': an "
        "embedding and a generation server behind an HAProxy router that routes by path and "
        "aggregates /health: containers with --vllm-image (needs --vllm-embedding-model), "
        "local processes and a local haproxy with --vllm-serve (needs its embedding server)",
        "single",
        lambda raw, at: parsers.choice(raw, at.flag, TOPOLOGIES),
        "single",
    ),
    Option(
        "gpus",
        "container.gpus",
        "WHICH",
        "GPUs for the containers: 'auto' (all when the "
        "Docker engine has NVIDIA's runtime, else none), 'all', 'none', or device ids like "
        "0,1",
        "auto",
        _by_flag(parsers.gpus),
        "auto",
        empty_means_unset=True,
    ),
    Option(
        "gpu-share",
        "container.gpu_share",
        "F[,F]",
        "GPU memory share "
        "(GPU_MEMORY_UTILIZATION) of the container, or of the embedding and generation "
        "containers for 'split'",
        "the image's; 0.2,0.7 split",
        _gpu_share,
        (),
    ),
    Option(
        "hf-cache",
        "container.hf_cache",
        "DIR",
        "host folder mounted as the containers' Hugging Face cache; 'none' mounts nothing",
        DEFAULT_HF_CACHE,
        _hf_cache,
        derive_default=lambda at: _hf_cache(DEFAULT_HF_CACHE, at),
        empty_means_unset=True,
    ),
    Option(
        "shm-size",
        "container.shm_size",
        "SIZE",
        "shared memory of each engine container, e.g. 16g",
        DEFAULT_SHM_SIZE,
        _by_flag(parsers.shm_size),
        DEFAULT_SHM_SIZE,
        empty_means_unset=True,
    ),
    Option(
        "router-image",
        "container.router_image",
        "IMAGE",
        "HAProxy image of the split topology's router",
        DEFAULT_ROUTER_IMAGE,
        default=DEFAULT_ROUTER_IMAGE,
        empty_means_unset=True,
    ),
    Option(
        "router-config",
        "container.router_config",
        "FILE",
        "HAProxy configuration of the router",
        "the bundled one (containers/router-haproxy.cfg)",
        lambda raw, at: parsers.readable_file(raw, at.flag, at.root),
    ),
    Option(
        "container-env",
        "container.env",
        "NAME[=VALUE]",
        "pass an environment variable to "
        "the containers, from this environment when no VALUE is given; values of names with "
        "TOKEN, KEY or SECRET never appear in logs; HF_TOKEN is passed when set; repeatable",
        "none",
        _many(parsers.env_item),
        (),
        action="append",
        ini_type="linelist",
        ini_help="environment passed to the containers",
    ),
)


# issue 18: baseline
OPTIONS += (
    Option(
        "baseline",
        "baseline",
        "PATH",
        "compare with an earlier run: its results JSON or certification bundle folder; the "
        "baseline suite then fails when a determinism prompt's greedy answer changed or a "
        "latency level regressed, and the summary lists tests that passed there and fail now",
        "none",
        lambda raw, at: parsers.baseline_file(raw, at.flag, at.root),
        ini_help="results file or bundle of the run to compare with",
    ),
    Option(
        "baseline-accept",
        "baseline_accept",
        "WHAT,...",
        "changes from the baseline made on purpose: 'outputs' (every greedy answer), "
        "'outputs:PROMPT' (one prompt's), 'latency' (every latency regression); shown, "
        "not failed",
        "none",
        _by_flag(parsers.baseline_accept),
        (),
        ini_help="baseline changes accepted on purpose",
    ),
    Option(
        "baseline-tolerance",
        "baseline_tolerance",
        "KEY=PERCENT,...",
        "how much slower than the baseline a latency percentile may be: METRIC_pQ=PERCENT "
        "(metrics ttft, itl, e2e; q 50, 90, 95, 99; 'off' leaves a key out) and abs_ms=MS, "
        "what a regression must also exceed; a regression fails only when also significant "
        "(seeded bootstrap: the 95% interval of the percentile ratio wholly above 1 + tolerance)",
        "ttft/itl/e2e p50 at 50% and p95 at 75%, abs_ms=1",
        _by_flag(parsers.baseline_tolerance),
        derive_default=lambda at: dict(parsers.BASELINE_TOLERANCE_DEFAULTS),
        ini_help="per-key latency tolerances against the baseline",
    ),
    Option(
        "baseline-confirm",
        "baseline_confirm",
        "WHEN",
        "measure a latency level a second time, at the end of the run, before calling it "
        "regressed: 'auto' where its first measurement regressed (the regression stands "
        "unless the second is within the tolerance: a passing slowdown of the host is not "
        "repeated), 'always' every level (both shown), 'off' never (the first alone decides)",
        "auto",
        lambda raw, at: parsers.choice(raw, at.flag, BASELINE_CONFIRM),
        "auto",
        ini_help="when a latency level is measured a second time",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Register every option of :data:`OPTIONS` in one group, with its ini twin (every
    option but ``--vllm-api-key`` has one: a key does not belong in a checked-in file)."""
    group = parser.getgroup(*GROUP)
    for option in OPTIONS:
        extra: dict[str, Any] = {} if option.metavar is None else {"metavar": option.metavar}
        group.addoption(
            option.flag,
            action=option.action,
            default=None,
            help=option.full_help.replace("%", "%%"),
            **extra,
        )
    for option in OPTIONS:
        if option.ini_name is None:
            continue
        kind = None if option.ini_type == "string" else option.ini_type
        default: Any = False if kind == "bool" else [] if kind else ""
        parser.addini(option.ini_name, option.ini_help or option.help, type=kind, default=default)


def render_options_markdown() -> str:
    """The option reference, as a Markdown table (docs/options.md)."""
    lines = [
        "# Options",
        "",
        "Generated from `pytest_vllm_conformance/config/table.py` "
        "(`render_options_markdown()`); do not edit by hand. Every option but "
        "`--vllm-api-key` also reads its ini twin; the command line wins.",
        "",
        "| option | ini | default | what it does |",
        "|---|---|---|---|",
    ]
    for option in OPTIONS:
        flag = option.flag + (f"={option.metavar}" if option.metavar else "")
        ini = f"`{option.ini_name}`" if option.ini_name else ""
        cells = (f"`{flag}`", ini, option.default_text, option.help)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
