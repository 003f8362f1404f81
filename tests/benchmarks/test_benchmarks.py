"""The benchmark keeps working: ``python -m benchmarks --quick`` on SQLite and PostgreSQL.

Tiny run counts, and no assertion on any figure: only that every row of the table, the ratio
to the raw limit and the targets are printed.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from benchmarks import bytecodes, instructions, sizes, stored
from benchmarks.cli import interpreter, main
from benchmarks.targets import cpu_count, open_target
from tests import pg

ROOT = Path(__file__).resolve().parents[2]

ROWS = (
    "latency, 5-step linear run",
    "throughput, 5-step runs",
    "fan-out 1 -> 10 -> 1",
    "statements, commits per step",
    "raw limit: driver, 2 txns/step",
    "tracing off",
    "tracing on (SDK, discarding exporter)",
    "flow: key limit 2, 8 keys",
    "flow: queue rate limit 10/s",
    "start_run beside a busy worker process",
)


def _check_table(output: str) -> None:
    lines = output.splitlines()
    numbered = [line.split()[0] for line in lines if line[:1].isdigit()]
    # --quick: 1 and 4 threads; row 7 is tracing off and on; row 8 a key and a rate limit
    assert numbered == ["1", "2", "2", "3", "4", "5", "6", "6", "7", "7", "8", "8", "9"]
    for row in ROWS:
        assert row in output
    assert "1 worker x 4 threads" in output
    assert "2 processes x 2 threads" in output
    assert any(line.startswith("ratio: squidmesh best ") for line in lines)
    assert "targets:" in output
    assert output.count("] ") >= 5  # one PASS / FAIL / n/a marker per target
    assert "tracing costs < 10% of steps/s" in output


def test_quick_benchmark_on_sqlite_prints_every_row_and_the_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--db", "sqlite", "--quick"]) == 0
    output = capsys.readouterr().out
    _check_table(output)
    assert "SQLite" in output
    assert "synchronous=FULL" in output
    assert f"machine: {cpu_count()} CPUs, {interpreter()}, load average " in output
    assert "[ n/a] PostgreSQL steps/s" in output


def test_the_header_names_the_interpreter_measured_and_how_libpython_is_linked() -> None:
    # The same code runs an eighth faster on one build of CPython than on another: ldd, which
    # reads the executable rather than the process, says which one the figures are of.
    executable = os.path.realpath(sys.executable)
    linked = subprocess.run(
        ["ldd", executable],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    libraries = [
        line.split("=>")[1].split()[0] for line in linked.splitlines() if "libpython" in line
    ]
    described = interpreter()
    assert described.startswith(f"Python {platform.python_version()} (CPython {executable}, ")
    if libraries:
        assert described.endswith(f", libpython shared: {os.path.realpath(libraries[0])})")
    else:
        assert described.endswith(", libpython linked in)")


def test_quick_benchmark_json_has_every_row_and_the_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--db", "sqlite", "--quick", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [row["row"] for row in document["rows"]] == [1, 2, 2, 3, 4, 6, 6, 7, 7, 8, 8, 9]
    assert document["ratio"] > 0
    assert document["ours_best"]["row"] in (2, 3)
    assert document["raw_best"]["row"] == 6
    assert document["targets"][0]["marker"] == "n/a"  # the PostgreSQL ratio target
    counted = [row for row in document["rows"] if row["commits"] is not None]
    assert [(row["row"], row["concurrency"]) for row in counted] == [(2, 4), (8, 4)]


def test_quick_size_table_has_a_line_per_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    assert sizes.main(["--db", "sqlite", "--quick"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["steps", "output/step", "runs", "p50", "ms/run", "ms/step"]
    assert [line.split()[:2] for line in lines[2:]] == [
        ["1", "tiny"],
        ["5", "tiny"],
        ["5", "10,000"],
    ]


def test_quick_stored_runs_table_compares_empty_and_full_tables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert stored.main(["--db", "sqlite", "--quick", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["stored", "runs", "ms/step", "steps/s", "rounds", "(ms/step)"]
    assert [line.split()[0] for line in lines[3:5]] == ["0", "1,000"]
    assert lines[5].startswith("cost per step with 1,000 stored runs: ")


def test_stored_runs_are_finished_copies_with_their_history(tmp_path: Path) -> None:
    from benchmarks.squidmesh import CompletionObserver
    from benchmarks.workflows import make_client

    observer = CompletionObserver()
    with make_client(f"sqlite+pysqlite:///{tmp_path}/s.db", [observer]) as client:
        client.migrate()
        stored._store_finished_runs(client, observer, 20)
        runs = client.list_runs(limit=100)
        assert len(runs) == 21
        assert {run.status for run in runs} == {"completed"}
        copy = client.inspect_run(runs[-1].id, include_history=True)
        assert [len(sr.attempts or ()) for sr in copy.step_runs or ()] == [1] * 5


def test_bad_arguments_exit_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--db", "sqlite", "--postgres-url", "postgresql://nowhere/db"])
    assert exit_info.value.code == 2
    assert "--postgres-url needs --db postgres" in capsys.readouterr().err


@pytest.mark.postgres
def test_quick_benchmark_on_postgres_prints_every_row_and_the_ratio(
    capsys: pytest.CaptureFixture[str], postgres_server_url: URL
) -> None:
    database = pg.create_empty_database(postgres_server_url)
    try:
        assert main(["--db", "postgres", "--quick", "--postgres-url", pg.render(database)]) == 0
    finally:
        assert database.database is not None
        pg.drop_database(postgres_server_url, database.database)
    output = capsys.readouterr().out
    _check_table(output)
    assert "PostgreSQL" in output
    assert "synchronous_commit=" in output


@pytest.mark.postgres
def test_without_a_url_a_private_durable_server_is_started_and_destroyed() -> None:
    with open_target("postgres") as target:
        assert "fsync=on, synchronous_commit=on" in target.description
        assert "private server" in target.description
        assert target.url is not None
        url = target.fresh()
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                assert connection.scalar(sa.text("SHOW fsync")) == "on"
                assert connection.scalar(sa.text("SHOW synchronous_commit")) == "on"
                data = Path(str(connection.scalar(sa.text("SHOW data_directory"))))
        finally:
            engine.dispose()
        assert data.is_dir()
    assert not data.exists()
    assert not data.parent.exists()


def test_bytecode_counts_of_the_same_code_agree_and_name_the_hot_path(tmp_path: Path) -> None:
    # The first count compiles the hot path's statements; the next two run the same code.
    counts = [bytecodes.count(f"sqlite:///{tmp_path / f'b{n}.db'}", 10) for n in range(3)]
    warm = [c.bytecodes_per_step for c in counts[1:]]
    assert 1_000 < warm[0] < 100_000
    assert abs(warm[0] - warm[1]) <= 0.02 * warm[0]
    assert counts[1].calls_per_step > 50
    files = counts[1].by_file()
    assert files["squidmesh_sdk/runtime/execution.py"] > 0
    assert sum(files.values()) == sum(counts[1].bytecodes.values())


def test_bytecodes_with_tracing_count_the_sdk_too() -> None:
    # Child processes: installing a tracer provider is for the rest of a process.
    def table(*more: str) -> list[str]:
        command = [sys.executable, "-m", "benchmarks.bytecodes", "--db", "sqlite"]
        done = subprocess.run(
            [*command, "--runs", "5", "--top", "60", *more],
            cwd=ROOT,  # where the benchmarks package is (it is not installed)
            # Without the variables that would make OpenTelemetry load a provider by itself.
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout.splitlines()

    plain, traced = table(), table("--tracing")
    assert plain[0].endswith("one worker thread")
    assert traced[0].endswith("one worker thread; tracing on (SDK, discarding exporter)")
    per_step = [float(lines[1].split(": ")[1].replace(",", "")) for lines in (plain, traced)]
    assert per_step[1] > per_step[0] * 1.1
    assert not any("opentelemetry/sdk/" in line for line in plain)
    assert any(line.endswith("opentelemetry/sdk/trace/__init__.py") for line in traced)


def test_bytecode_table_and_its_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert bytecodes.main(["--db", "sqlite", "--runs", "3", "--top", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("bytecodes per step: ")
    assert lines[2].startswith("Python calls per step: ")
    assert lines[4] == "bytecodes/step  file"
    assert len(lines) == 1 + 2 + 1 + 1 + 5 + 1 + 1 + 5
    with pytest.raises(SystemExit) as exited:
        bytecodes.main(["--db", "sqlite", "--runs", "0"])
    assert exited.value.code == 2


_CALLGRIND = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 1750

ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50
cob=(2) /usr/lib/libsqlite3.so.0
cfl=(2) ???
cfn=(2) sqlite3_step
calls=3 0
* 900
fn=(3) _PyEval_EvalFrameDefault'2
5 200
ob=(2)
fl=(2)
fn=(2)
0 400
0 500
ob=(1)
fn=(1)
12 1
"""


def test_a_callgrind_profile_counts_each_function_its_own_instructions(tmp_path: Path) -> None:
    path = tmp_path / "callgrind.out"
    path.write_text(_CALLGRIND)
    profile = instructions.read_profile(path, steps=5)
    # The call's 900 are sqlite3_step's inclusive cost, counted where sqlite3_step runs; the
    # recursive "'2" level is the same function; "(2)" names the object and function again.
    assert profile.by_function == {
        ("/usr/lib/libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"): 351,
        ("/usr/lib/libsqlite3.so.0", "sqlite3_step"): 900,
    }
    assert profile.total == 1251
    smaller = instructions.Profile(2, Counter({("/usr/lib/libsqlite3.so.0", "sqlite3_step"): 300}))
    per_step, per_object, per_function = instructions.difference(smaller, profile)
    assert per_step == (1251 - 300) / 3
    assert per_object == {"libpython3.11.so.1.0": 117, "libsqlite3.so.0": 200}
    assert per_function["libsqlite3.so.0: sqlite3_step"] == 200
    with pytest.raises(ValueError, match="more steps"):
        instructions.difference(profile, smaller)


def test_a_profile_that_counted_nothing_is_refused_not_reported_as_free(tmp_path: Path) -> None:
    # What callgrind writes when counting never started: under a stripped interpreter, which
    # has no symbol for the function that turns it on.
    path = tmp_path / "callgrind.out"
    path.write_text("# callgrind format\nversion: 1\npositions: line\nevents: Ir\ntotals: 0\n")
    empty = instructions.read_profile(path, steps=5)
    with pytest.raises(RuntimeError, match=r"counted no instruction .* no symbol 'thread_run'"):
        instructions.counted(empty)
    full = tmp_path / "callgrind.full"
    full.write_text(_CALLGRIND)
    profile = instructions.read_profile(full, steps=5)
    assert instructions.counted(profile) is profile


@pytest.mark.timeout(600)
def test_instructions_per_step_are_counted_under_valgrind() -> None:
    # valgrind is installed by scripts/test. A session of its own, so that a timeout stops
    # the valgrind children too, not only the benchmark's process.
    command = [sys.executable, "-m", "benchmarks.instructions", "--db", "sqlite", "--runs", "1"]
    command += ["--workflow", "fan-out"]  # linear, the default, is the same path with 5 steps
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=540)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    lines = stdout.splitlines()
    assert "1 and 2 fan-out runs, one worker of 1 thread; valgrind " in lines[0]
    per_step = float(lines[1].removeprefix("instructions per step: ").replace(",", ""))
    assert 200_000 < per_step < 50_000_000
    objects = lines[lines.index("instructions/step  object file") + 1 :]
    by_object = {line.split()[1]: float(line.split()[0].replace(",", "")) for line in objects[:3]}
    # The interpreter and SQLite, which runs inside the worker's process, are both counted.
    assert any(name.startswith("libpython3") for name in by_object)
    assert any(name.startswith("libsqlite3") for name in by_object)
