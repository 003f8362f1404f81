"""The public surface is curated, documented and light to import."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import squidmesh_sdk

EXPECTED = [
    "COMPLETE",
    "AsyncClient",
    "AsyncRunHandle",
    "Attempt",
    "AuditEvent",
    "Backoff",
    "Branch",
    "BuiltinStep",
    "ChildRun",
    "Client",
    "ConcurrencyLimit",
    "Condition",
    "CronStart",
    "Database",
    "DatabaseExecutor",
    "DefinitionError",
    "DefinitionUnavailable",
    "DispatchFailed",
    "Executor",
    "ExecutorNotReady",
    "FlowControlUnsupported",
    "IdempotencyConflict",
    "InlineExecutor",
    "InvalidArgument",
    "InvalidConcurrencyKey",
    "InvalidExecutorPayload",
    "InvalidPayload",
    "InvalidResume",
    "InvalidRunId",
    "InvalidSchedule",
    "InvalidSignal",
    "InvalidStep",
    "InvalidTransition",
    "InvalidTrigger",
    "InvalidWorkflow",
    "Issue",
    "MissingScheduleIdempotencyKey",
    "NonRetryableError",
    "OutcomeNotStored",
    "PurgeResult",
    "QueueLimits",
    "RateLimit",
    "Retry",
    "RetryAfter",
    "RetryRefused",
    "Run",
    "RunExplanation",
    "RunHandle",
    "RunNotFound",
    "RunWaitTimeout",
    "SchemaNotReady",
    "SchemaTooNew",
    "Signal",
    "SquidmeshError",
    "StaleRecord",
    "Step",
    "StepContext",
    "StepHandle",
    "StepInputError",
    "StepOutputError",
    "StepRun",
    "StepSpec",
    "StepState",
    "StepTimeout",
    "TransitionSpec",
    "TriggerSpec",
    "UnsafeReplay",
    "UnsafeRetry",
    "Worker",
    "Workflow",
    "WorkflowDefinition",
    "compile",
    "cron",
    "manual",
    "now",
    "today",
    "when",
]


def test_all_is_pinned_and_sorted() -> None:
    assert squidmesh_sdk.__all__ == EXPECTED
    assert squidmesh_sdk.__all__ == sorted(
        squidmesh_sdk.__all__, key=lambda n: (not n.isupper(), n)
    )


def test_every_public_name_is_documented() -> None:
    undocumented = [
        name
        for name in squidmesh_sdk.__all__
        if inspect.isclass(obj := getattr(squidmesh_sdk, name)) or inspect.isfunction(obj)
        if not (obj.__doc__ or "").strip()
    ]
    assert undocumented == []


def test_public_methods_are_documented() -> None:
    missing = []
    for name in squidmesh_sdk.__all__:
        obj = getattr(squidmesh_sdk, name)
        if not inspect.isclass(obj):
            continue
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not (
                inspect.isfunction(member) or isinstance(member, property | staticmethod)
            ):
                continue
            doc = (
                member.__doc__ if not isinstance(member, staticmethod) else member.__func__.__doc__
            )
            if not (doc or "").strip():
                missing.append(f"{name}.{attr}")
    assert missing == []


def test_every_error_shares_one_root() -> None:
    errors = [getattr(squidmesh_sdk, n) for n in squidmesh_sdk.__all__]
    exceptions = [e for e in errors if inspect.isclass(e) and issubclass(e, BaseException)]
    assert len(exceptions) == 34
    assert all(issubclass(e, squidmesh_sdk.SquidmeshError) for e in exceptions)


def test_every_error_has_its_own_snake_case_code_listed_in_the_errors_docstring() -> None:
    errors = [getattr(squidmesh_sdk, n) for n in squidmesh_sdk.__all__]
    exceptions = [e for e in errors if inspect.isclass(e) and issubclass(e, BaseException)]
    codes = [e.code for e in exceptions]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", code) for code in codes)
    tree = squidmesh_sdk.errors.__doc__ or ""
    assert [code for code in codes if code not in tree] == []


def test_import_does_not_load_drivers_or_the_otel_sdk() -> None:
    code = (
        "import sys, squidmesh_sdk\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "{'psycopg', 'celery', 'procrastinate'} or m.startswith('opentelemetry.sdk')]\n"
        "print(','.join(sorted(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_an_application_without_logging_sees_no_runtime_warnings() -> None:
    code = (
        "import logging, squidmesh_sdk\n"
        "logging.getLogger('squidmesh_sdk.runtime').warning('workflow step failed')\n"
        "logging.getLogger('elsewhere').warning('not ours')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr == "not ours\n"  # Python's last-resort handler, for others only
