"""--vllm-cpu-split (issue 15 item 4): a server the plugin starts and the harness get
separate CPUs, so the harness is never descheduled by the engine it measures.

A stand-in interpreter plays vLLM (as in test_serve.py): it writes down the affinity and
the OpenMP binding it was started with, then serves the fault server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vllm_conformance.config import ContainerSettings, Settings, read_settings
from pytest_vllm_conformance.config.parsers import cpu_split as validate
from pytest_vllm_conformance.config.parsers import format_cpus
from pytest_vllm_conformance.target import cpu_split
from pytest_vllm_conformance.target.container import ContainerSpec, docker_kwargs
from pytest_vllm_conformance.target.cpu_split import CpuSplit, plan
from pytest_vllm_conformance.target.launch import ContainerDeployment
from pytest_vllm_conformance.target.local import LocalVllmServer, spawn
from tests.fault_server import FaultServer

REPO = Path(__file__).resolve().parent.parent
CPUS = sorted(os.sched_getaffinity(0))
two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs to split")

FAKE_VLLM = f"""#!{sys.executable}
import os, sys, time
sys.path.insert(0, {str(REPO)!r})
print("fake vllm affinity:", sorted(os.sched_getaffinity(0)), flush=True)
print("fake vllm bind:", os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "unset"), flush=True)
from tests.fault_server import FaultServer
server = FaultServer()
server.start(int(sys.argv[sys.argv.index("--port") + 1]))
while True:
    time.sleep(1)
"""

HARNESS_TEST = """
import os

def test_where_the_harness_runs(record_property):
    print("harness affinity:", sorted(os.sched_getaffinity(0)))
    record_property("harness", sorted(os.sched_getaffinity(0)))
"""


# -- the option -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("auto", "auto"),
        ("OFF", "off"),
        (" off ", "off"),
        ("0-5/6,7", "0-5/6,7"),
        ("0/1", "0/1"),
        ("3,0-1/2", "0,1,3/2"),
        ("0-2/7-9", "0-2/7-9"),
    ],
)
def test_good_values(raw: str, expected: str) -> None:
    assert validate(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "yes", "0-5", "0/", "/1", "a/b", "5-3/6", "0;1/2", "0-1/1", "-1/2", "0/1/2"]
)
def test_bad_values_are_one_sentence(raw: str) -> None:
    with pytest.raises(pytest.UsageError) as info:
        validate(raw)
    text = str(info.value)
    assert text.startswith("--vllm-cpu-split ") and "\n" not in text and text.endswith(".")


def test_a_bad_value_on_the_command_line_is_one_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--vllm-url=http://127.0.0.1:9", "--vllm-cpu-split=half")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert errors == [
        "ERROR: --vllm-cpu-split must be auto, off or SERVER_CPUS/HARNESS_CPUS "
        "with CPU lists like 0-5/6,7, got 'half'."
    ]


def test_the_ini_twin_is_read(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nvllm_cpu_split = off\n")
    assert read_settings(pytester.parseconfigure()).cpu_split == "off"
    assert read_settings(pytester.parseconfigure("--vllm-cpu-split=0/1")).cpu_split == "0/1"


# -- what auto, off and an explicit split pin -----------------------------------------------
@pytest.mark.parametrize(
    ("available", "server", "harness"),
    [
        (range(2), {0}, {1}),
        (range(4), {0, 1, 2}, {3}),
        (range(8), set(range(6)), {6, 7}),
        (range(16), set(range(14)), {14, 15}),
        ((0, 2, 4), {0, 2}, {4}),  # a cgroup's scattered CPUs: the last ones go to the harness
    ],
)
def test_auto_gives_the_harness_the_last_cpus(
    available: range, server: set[int], harness: set[int]
) -> None:
    got = plan("auto", frozenset(available))
    assert got.split == CpuSplit(frozenset(server), frozenset(harness))


def test_auto_on_one_cpu_pins_nothing_and_says_so() -> None:
    got = plan("auto", frozenset({3}))
    assert got.split is None and got.describe() == "none, only CPU 3 is available"


def test_off_and_a_system_without_affinity_pin_nothing() -> None:
    assert plan("off", frozenset(range(8))).split is None
    assert plan("off", frozenset(range(8))).describe() == "off, nothing pinned"
    assert plan("auto", None).split is None


def test_an_explicit_split_is_kept_and_checked_against_the_usable_cpus() -> None:
    assert plan("0-5/6,7", frozenset(range(8))).describe() == "server 0-5, harness 6,7"
    with pytest.raises(
        pytest.UsageError,
        match=r"names CPU\(s\) 8,9 this process may not "
        r"use; it may use 0-7\.$",
    ):
        plan("0-5/8-9", frozenset(range(8)))


def test_cpu_lists_are_written_as_ranges() -> None:
    assert format_cpus({0, 1, 2, 5, 7, 8}) == "0-2,5,7,8"
    assert format_cpus({4}) == "4"


# -- the server's environment ---------------------------------------------------------------
def test_vllm_is_told_the_server_cpus() -> None:
    env: dict[str, str] = {}
    cpu_split.server_environment(env, frozenset({0, 1, 2}), ())
    assert env == {"VLLM_CPU_OMP_THREADS_BIND": "0-2"}


def test_a_binding_the_user_set_is_kept() -> None:
    env = {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    cpu_split.server_environment(env, frozenset({0}), ())
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"


@pytest.mark.parametrize(
    ("args", "bound"),
    [
        (("--tensor-parallel-size", "2"), False),
        (("-tp=2",), False),
        (("--pipeline-parallel-size=2",), False),
        (("--tensor-parallel-size=1",), True),
        (("--max-num-seqs", "2"), True),
    ],
)
def test_several_ranks_leave_the_binding_to_the_affinity(
    args: tuple[str, ...], bound: bool
) -> None:
    env: dict[str, str] = {}
    cpu_split.server_environment(env, frozenset({0, 1}), args)
    assert ("VLLM_CPU_OMP_THREADS_BIND" in env) is bound


def test_the_local_server_environment_carries_the_binding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    settings = Settings(serve="m", output_dir=tmp_path)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in LocalVllmServer(settings).environment()
    pinned = LocalVllmServer(settings, cpus=frozenset({0}))
    assert pinned.environment()["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")  # the user's own value wins
    assert pinned.environment()["VLLM_CPU_OMP_THREADS_BIND"] == "1"


# -- processes actually pinned ----------------------------------------------------------------
def _affinity_of_child(tmp_path: Path, cpus: frozenset[int] | None) -> str:
    log_path = tmp_path / "child.log"
    code = (
        "import os, subprocess, sys; print(sorted(os.sched_getaffinity(0))); "
        "sys.stdout.flush(); subprocess.run([sys.executable, '-c', "
        "'import os; print(sorted(os.sched_getaffinity(0)))'])"
    )
    with log_path.open("wb") as log:
        proc = spawn([sys.executable, "-c", code], dict(os.environ), log, cpus)
        assert proc.wait(timeout=60) == 0
    return log_path.read_text()


@two_cpus
def test_the_started_server_and_its_children_run_on_the_server_cpus(tmp_path: Path) -> None:
    first = CPUS[0]
    assert _affinity_of_child(tmp_path, frozenset({first})).split() == [f"[{first}]"] * 2
    assert _affinity_of_child(tmp_path, None).splitlines() == [str(CPUS)] * 2


@two_cpus
def test_pinning_the_harness_moves_threads_started_before_it() -> None:
    last = CPUS[-1]
    code = f"""
import os, threading
from pytest_vllm_conformance.target import cpu_split
seen = []
go = threading.Event()
def worker():
    go.wait()
    seen.append(sorted(os.sched_getaffinity(0)))
t = threading.Thread(target=worker); t.start()
cpu_split.pin_process(frozenset({{{last}}}))
go.set(); t.join()
print(seen[0], sorted(os.sched_getaffinity(0)))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == [f"[{last}]", f"[{last}]"]


def _serve(pytester: pytest.Pytester, fake_python: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_harness=HARNESS_TEST)
    return pytester.runpytest_subprocess(
        "--vllm-serve=some-model",
        f"--vllm-serve-python={fake_python}",
        "--vllm-suites=off",
        "-s",
        "-p",
        "no:cacheprovider",
        *args,
        timeout=180,
    )


@two_cpus
def test_serve_pins_the_server_and_the_harness_apart(
    pytester: pytest.Pytester, fake_python: str
) -> None:
    server, harness = CPUS[0], CPUS[1]
    result = _serve(pytester, fake_python, f"--vllm-cpu-split={server}/{harness}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"vllm-conformance: CPU split: server {server}, harness {harness}",
            f"*harness affinity: [[]{harness}[]]",
        ]
    )
    log = (pytester.path / "reports" / "vllm-server.log").read_text()
    assert f"fake vllm affinity: [{server}]" in log
    assert f"fake vllm bind: {server}" in log


@two_cpus
def test_auto_is_the_default(pytester: pytest.Pytester, fake_python: str) -> None:
    result = _serve(pytester, fake_python)
    result.assert_outcomes(passed=1)
    split = plan("auto", frozenset(CPUS)).split
    assert split is not None
    result.stdout.fnmatch_lines(
        [
            f"vllm-conformance: CPU split: {split.describe()}",
            f"*harness affinity: {sorted(split.harness)}".replace("[", "[[]"),
        ]
    )


def test_off_pins_nothing(pytester: pytest.Pytester, fake_python: str) -> None:
    result = _serve(pytester, fake_python, "--vllm-cpu-split=off")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "vllm-conformance: CPU split: off, nothing pinned",
            f"*harness affinity: {CPUS}".replace("[", "[[]"),
        ]
    )
    log = (pytester.path / "reports" / "vllm-server.log").read_text()
    assert f"fake vllm affinity: {CPUS}" in log and "fake vllm bind: unset" in log


@two_cpus
def test_xdist_workers_keep_to_the_harness_cpus(
    pytester: pytest.Pytester, fake_python: str
) -> None:
    server, harness = CPUS[0], CPUS[1]
    pytester.makepyfile(test_harness=HARNESS_TEST)
    result = pytester.runpytest_subprocess(
        "--vllm-serve=some-model",
        f"--vllm-serve-python={fake_python}",
        "--vllm-suites=off",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        f"--vllm-cpu-split={server}/{harness}",
        f"--junitxml={pytester.path / 'junit.xml'}",
        timeout=180,
    )
    result.assert_outcomes(passed=1)
    junit = (pytester.path / "junit.xml").read_text()
    assert f'name="harness" value="[{harness}]"' in junit


def test_a_url_target_pins_nothing(pytester: pytest.Pytester, fault: FaultServer) -> None:
    pytester.makepyfile(test_harness=HARNESS_TEST)
    result = pytester.runpytest_subprocess(
        f"--vllm-url={fault.url}", "--vllm-suites=off", "-s", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    assert "CPU split" not in result.stdout.str()
    result.stdout.fnmatch_lines([f"*harness affinity: {CPUS}".replace("[", "[[]")])


# -- containers ---------------------------------------------------------------------------
def test_the_container_kwargs_carry_the_cpuset() -> None:
    spec = ContainerSpec(role="server", image="i", cpuset="0-5")
    kwargs = docker_kwargs(spec, "run1")
    assert kwargs["cpuset_cpus"] == "0-5" and kwargs["labels"]  # one dict: with_kwargs replaces
    assert "cpuset_cpus" not in docker_kwargs(ContainerSpec(role="server", image="i"), "run1")


def test_every_container_of_the_run_gets_the_server_cpus(tmp_path: Path) -> None:
    settings = Settings(
        model="m",
        embedding_model="e",
        output_dir=tmp_path,
        container=ContainerSettings(
            image="img", topology="split", env=(("VLLM_CPU_OMP_THREADS_BIND", "nobind"),)
        ),
    )
    deployment = ContainerDeployment(settings, print, frozenset({0, 1, 2, 3, 4, 5}))
    for role in ("embed", "gen"):
        spec = deployment.spec(role, "none")
        assert spec.cpuset == "0-5"
        assert spec.env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"  # the user's wins
    assert deployment.router_spec().cpuset == "0-5"
    plain = ContainerDeployment(
        Settings(model="m", output_dir=tmp_path, container=ContainerSettings(image="img")), print
    )
    spec = plain.spec("server", "none")
    assert spec.cpuset is None and "VLLM_CPU_OMP_THREADS_BIND" not in spec.env
    pinned = ContainerDeployment(
        Settings(model="m", output_dir=tmp_path, container=ContainerSettings(image="img")),
        print,
        frozenset({0}),
    )
    assert pinned.spec("server", "none").env["VLLM_CPU_OMP_THREADS_BIND"] == "0"


def test_auto_leaves_a_remote_docker_engine_alone() -> None:
    cpus = frozenset(range(4))
    remote = cpu_split.container_plan("auto", cpus, "tcp://gpu-box:2376")
    assert remote.split is None and "not on this machine" in remote.describe()
    assert cpu_split.container_plan("auto", cpus, "unix:///run/docker.sock").split is not None
    assert cpu_split.container_plan("auto", cpus, None).split is not None
    assert cpu_split.container_plan("0/1", cpus, "tcp://gpu-box:2376").split is not None
