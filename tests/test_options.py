"""Options: one group, validated as they parse, ini twins, and suite selection."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_conformance.config import (
    OPTIONS,
    ContainerSettings,
    PerfSettings,
    Settings,
    normalise_url,
    parsers,
    read_settings,
    redact_url,
    render_options_markdown,
)


def test_help_shows_the_option_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*OpenAI-compatible server conformance*",
            "*--vllm-url=URL*",
            "*--vllm-serve=MODEL*",
            "*--vllm-api-key=KEY*",
            "*--vllm-timeout=SECONDS*",
            "*vllm_url (linelist)*",
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--vllm-url=ftp://host"],
            "ERROR: --vllm-url must be http(s)://host[:port], got 'ftp://host'.",
        ),
        (["--vllm-url=http://"], "ERROR: --vllm-url must be http(s)://host[:port], got 'http://'."),
        (["--vllm-url=http://h:99999"], "ERROR: --vllm-url must be http(s)://host[:port]*"),
        (
            ["--vllm-url=http://a:1", "--vllm-serve=tiny"],
            "ERROR: use one of --vllm-url, --vllm-serve and --vllm-image.",
        ),
        (["--vllm-image=i"], "ERROR: --vllm-image needs --vllm-model=MODEL, the model the image*"),
        (
            ["--vllm-topology=split"],
            "ERROR: --vllm-topology=split needs --vllm-serve=MODEL or --vllm-image=IMAGE.",
        ),
        (
            ["--vllm-serve=tiny", "--vllm-topology=split", "--vllm-serve-embedding=off"],
            "ERROR: --vllm-topology=split with --vllm-serve needs its embedding server: "
            "--vllm-serve-embedding=MODEL (auto starts one only for --vllm-serve=tiny*",
        ),
        (
            ["--vllm-serve=/models/m", "--vllm-topology=split"],
            "ERROR: --vllm-topology=split with --vllm-serve needs its embedding server*",
        ),
        (
            ["--vllm-serve=tiny", "--vllm-serve-replicas=0"],
            "ERROR: --vllm-serve-replicas must be a whole number of at least 1, got '0'.",
        ),
        (
            ["--vllm-url=http://a:1", "--vllm-serve-replicas=2"],
            "ERROR: --vllm-serve-replicas needs --vllm-serve=MODEL (replicas found elsewhere: "
            "pass --vllm-url once for each).",
        ),
        (
            ["--vllm-serve-embedding=/models/e"],
            "ERROR: --vllm-serve-embedding needs --vllm-serve=MODEL.",
        ),
        (
            [
                "--vllm-serve=tiny",
                "--vllm-embedding-url=http://e:1",
                "--vllm-serve-embedding=tiny",
            ],
            "ERROR: use one of --vllm-embedding-url and --vllm-serve-embedding.",
        ),
        (
            ["--vllm-image=i", "--vllm-model=m", "--vllm-topology=split"],
            "ERROR: --vllm-topology=split needs --vllm-embedding-model=MODEL"
            " for its embedding server.",
        ),
        (["--vllm-topology=triple"], "ERROR: --vllm-topology must be one of single, split*"),
        (
            ["--vllm-gpus=some"],
            "ERROR: --vllm-gpus must be auto, all, none or device ids like 0,1*",
        ),
        (["--vllm-shm-size=lots"], "ERROR: --vllm-shm-size must be a size like 512m or 16g*"),
        (
            [
                "--vllm-image=i",
                "--vllm-model=m",
                "--vllm-topology=split",
                "--vllm-embedding-model=e",
                "--vllm-gpu-share=0.6,0.6",
            ],
            "ERROR: --vllm-gpu-share must be two fractions like 0.2,0.7*",
        ),
        (["--vllm-gpu-share=0"], "ERROR: --vllm-gpu-share must be one fraction in (0, 1]*"),
        (
            ["--vllm-router-config=nope.cfg"],
            "ERROR: --vllm-router-config must name a readable file*",
        ),
        (["--vllm-container-env=1TOKEN=hf_abc"], "ERROR: --vllm-container-env must be NAME or*"),
        (
            ["--vllm-timeout=0"],
            "ERROR: --vllm-timeout must be a positive number of seconds, got '0'.",
        ),
        (["--vllm-ready-timeout=soon"], "ERROR: --vllm-ready-timeout must be a positive number*"),
        (["--vllm-profile=lenient"], "ERROR: --vllm-profile must be one of auto, openai, vllm*"),
        (["--vllm-suites=maybe"], "ERROR: --vllm-suites must be one of auto, on, off*"),
        (["--vllm-latency-concurrency=1,x"], "ERROR: --vllm-latency-concurrency must be whole*"),
        (
            ["--vllm-latency-requests=0"],
            "ERROR: --vllm-latency-requests must be a whole number of at least 1, got '0'.",
        ),
        (["--vllm-latency-rate=-2"], "ERROR: --vllm-latency-rate must be a number above 0*"),
        (["--vllm-slo=ttft=5"], "ERROR: --vllm-slo: 'ttft=5' is not KEY=NUMBER with a known key*"),
        (
            ["--vllm-memory-duration=2s"],
            "ERROR: --vllm-memory-duration must be a duration from 5s*",
        ),
        (["--vllm-memory-max-growth=lots"], "ERROR: --vllm-memory-max-growth must be a number*"),
    ],
)
def test_bad_values_are_one_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and errors[0].startswith(message.rstrip("*")), errors
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("args", "embedding", "name", "replicas"),
    [
        (["--vllm-serve=tiny"], "tiny", "tiny-embed", 1),
        (["--vllm-serve=tiny", "--vllm-serve-embedding=off"], None, None, 1),
        (["--vllm-serve=tiny", "--vllm-embedding-url=http://e:1"], None, None, 1),
        (["--vllm-serve=/m", "--vllm-serve-replicas=3"], None, None, 3),
        (["--vllm-serve=/m", "--vllm-serve-embedding=/e"], "/e", "/e", 1),
        (["--vllm-serve=tiny", "--vllm-embedding-model=emb"], "tiny", "emb", 1),
        (["--vllm-url=http://a:1"], None, None, 1),
    ],
)
def test_what_serve_starts_besides_the_generation_server(
    pytester: pytest.Pytester,
    args: list[str],
    embedding: str | None,
    name: str | None,
    replicas: int,
) -> None:
    """--vllm-serve=tiny brings its embedding server unless told otherwise; the embedding
    model under test is the name the started one serves."""
    read = read_settings(pytester.parseconfigure(*args))
    assert (read.serve_embedding, read.embedding_model, read.serve_replicas) == (
        embedding,
        name,
        replicas,
    )


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvllm_timeout = -3\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vllm-timeout must be a positive number*'-3'."])


def test_command_line_wins_over_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvllm_url = http://ini-host:1\nvllm_timeout = 7\n")
    config = pytester.parseconfigure("--vllm-url=http://cli-host:2")
    settings = read_settings(config)
    assert settings.urls == ("http://cli-host:2",)
    assert settings.timeout == 7.0


def test_api_key_comes_from_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    settings = read_settings(pytester.parseconfigure())
    assert settings.api_key is not None and settings.api_key.reveal() == "sk-from-openai-env"
    monkeypatch.setenv("VLLM_API_KEY", "sk-from-vllm-env")
    settings = read_settings(pytester.parseconfigure())
    assert settings.api_key is not None and settings.api_key.reveal() == "sk-from-vllm-env"
    assert "sk-from" not in repr(settings)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://h:8000", "http://h:8000"),
        ("http://h:8000/", "http://h:8000"),
        ("http://h:8000/v1", "http://h:8000"),
        ("https://h/prefix/v1/", "https://h/prefix"),
        ("http://user:pw@h:1", "http://h:1"),
    ],
)
def test_urls_are_normalised(raw: str, expected: str) -> None:
    assert normalise_url(raw, "--vllm-url") == expected


def test_credentials_in_urls_are_never_printed() -> None:
    assert redact_url("http://user:pw@h:1/x") == "http://***@h:1/x"
    with pytest.raises(pytest.UsageError) as info:
        normalise_url("ftp://user:secretpw@h", "--vllm-url")
    assert "secretpw" not in str(info.value)


def test_without_a_target_the_bundled_suites_stay_out(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_mine(): pass")
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    assert "test_health.py" not in result.stdout.str()


def test_our_markers_are_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.determinism
        @pytest.mark.cancellation
        def test_marked(): pass
    """)
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.determinism: identical outputs*", "@pytest.mark.latency: *"]
    )


def test_collect_only_does_not_contact_the_server(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--collect-only", "-q", "--vllm-url=http://127.0.0.1:9")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["test_health.py::test_health_endpoint_answers_200"])


def test_named_paths_keep_the_bundled_suites_out_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_own="def test_own(): pass")
    auto = pytester.runpytest("--collect-only", "-q", "--vllm-url=http://h:1", "test_own.py")
    assert "test_health.py" not in auto.stdout.str()
    on = pytester.runpytest(
        "--collect-only", "-q", "--vllm-url=http://h:1", "--vllm-suites=on", "test_own.py"
    )
    on.stdout.fnmatch_lines(["test_own.py::test_own", "test_health.py::*"])


# -- the option table ------------------------------------------------------------------------
def test_every_setting_is_set_by_exactly_one_option() -> None:
    """The table is complete: no Settings field is read by hand, none by two options."""
    set_by = [o.field for o in OPTIONS] + [o.given_field for o in OPTIONS if o.given_field]
    fields = [f.name for f in dataclasses.fields(Settings) if f.name not in ("perf", "container")]
    fields += [f"perf.{f.name}" for f in dataclasses.fields(PerfSettings)]
    fields += [f"container.{f.name}" for f in dataclasses.fields(ContainerSettings)]
    assert sorted(set_by) == sorted(fields)


def test_without_options_the_settings_are_the_dataclass_defaults(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VLLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    read = read_settings(pytester.parseconfigure())
    out = pytester.path / "reports"
    assert read == Settings(
        output_dir=out,
        json_path=out / "results.json",
        html_path=out / "report.html",
        openmetrics_path=out / "metrics.txt",
        container=ContainerSettings(hf_cache=Path("~/.cache/huggingface").expanduser()),
    )


def test_every_option_has_its_ini_twin_and_says_its_default(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    for option in OPTIONS:
        if option.ini_name is not None:
            config.getini(option.ini_name)  # raises ValueError when not registered
        assert option.full_help.endswith(
            f"Default: {option.default_text}"
            + (f" (ini: {option.ini_name})." if option.ini_name else ".")
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--vllm-examples=0"],
            "ERROR: --vllm-examples must be a whole number of at least 1, got '0'.",
        ),
        (
            ["--vllm-latency-warmup=-1"],
            "ERROR: --vllm-latency-warmup must be a whole number of at least 0, got '-1'.",
        ),
        (
            ["--vllm-memory-concurrency=1.5"],
            "ERROR: --vllm-memory-concurrency must be a whole number of at least 1, got '1.5'.",
        ),
    ],
)
def test_every_count_option_words_its_error_alike(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line.startswith("ERROR:")] == [message]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--vllm-timeout=", "ERROR: --vllm-timeout must be a positive number of seconds, got ''."),
        (
            "--vllm-examples=",
            "ERROR: --vllm-examples must be a whole number of at least 1, got ''.",
        ),
        ("--vllm-profile=", "ERROR: --vllm-profile must be one of auto, openai, vllm, "),
        ("--vllm-prompts=", "ERROR: --vllm-prompts must name a readable file, got ''."),
    ],
)
def test_an_empty_command_line_value_is_judged_by_its_parser(
    pytester: pytest.Pytester, arg: str, message: str
) -> None:
    """``--vllm-timeout=`` is a mistake (a variable that expanded to nothing), not the default."""
    result = pytester.runpytest(arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_empty_values_mean_not_given_where_they_did_before(pytester: pytest.Pytester) -> None:
    """An empty ini value is never given; an empty command-line value is not given for the
    options whose empty value always meant "none" (a model, an SLO, a duration)."""
    pytester.makeini("[pytest]\nvllm_timeout =\nvllm_examples =\nvllm_profile =\n")
    read = read_settings(
        pytester.parseconfigure("--vllm-model=", "--vllm-slo=", "--vllm-latency-duration=")
    )
    assert (read.timeout, read.examples, read.profile) == (
        Settings().timeout,
        Settings().examples,
        Settings().profile,
    )
    assert (read.model, read.perf.slo, read.perf.duration_s) == (None, {}, None)
    assert [o.flag for o in OPTIONS if o.empty_means_unset and o.action != "store"] == []


@pytest.mark.parametrize("raw", ["05", "+5", "1_000", "5.0", "", " "])
def test_a_count_is_spelt_plainly(raw: str) -> None:
    with pytest.raises(pytest.UsageError, match="must be a whole number of at least 1"):
        parsers.integer(raw, "--vllm-examples")


def test_a_count_may_have_spaces_around_it_and_zero_where_allowed() -> None:
    assert parsers.integer(" 12 ", "--vllm-examples") == 12
    assert parsers.integer("0", "--vllm-latency-warmup", least=0) == 0


def test_ini_values_are_parsed_like_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nvllm_latency_concurrency = 2,4\nvllm_slo = none\n"
        "vllm_memory_duration = 10m\nvllm_latency_early_stop = off\n"
        "vllm_container_env =\n    A=1\n    B\n"
    )
    read = read_settings(pytester.parseconfigure())
    assert read.perf.concurrency == (2, 4) and read.perf.slo is None
    assert read.perf.memory_duration_s == 600 and read.perf.early_stop is False
    assert read.container.env == (("A", "1"), ("B", None))


def test_the_options_reference_is_generated_from_the_table() -> None:
    """docs/options.md is render_options_markdown()'s; regenerate it with
    python -c "from pytest_vllm_conformance.config import render_options_markdown as r;
    print(r(), end='')" > docs/options.md"""
    text = (Path(__file__).resolve().parent.parent / "docs" / "options.md").read_text()
    assert text == render_options_markdown()
    assert all(f"`{o.flag}" in text for o in OPTIONS)


def test_the_configuration_imports_no_domain_module() -> None:
    """config/ depends on pytest and the standard library only (plus secrets): domain
    modules import their parsed values from it, never the other way round."""
    code = (
        "import sys, pytest_vllm_conformance.config as c; "
        "import json; print(json.dumps(sorted(m for m in sys.modules "
        "if m.startswith('pytest_vllm_conformance'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [
        "pytest_vllm_conformance",
        "pytest_vllm_conformance.config",
        "pytest_vllm_conformance.config.parsers",
        "pytest_vllm_conformance.config.run_settings",
        "pytest_vllm_conformance.config.table",
        "pytest_vllm_conformance.secrets",
    ]
