"""samples/fastapi_app.py: the AsyncClient in a FastAPI app, driven through httpx."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from samples import fastapi_app
from samples.fastapi_app import create_app, serving

ORDER = {"order_id": "o-1", "amount_cents": 1200}


def drive(
    app_database: str, calls: Callable[[httpx.AsyncClient], Awaitable[Any]], **options: Any
) -> Any:
    async def body() -> Any:
        async with serving(create_app(app_database, **options)) as http:
            return await calls(http)

    return asyncio.run(body())


def test_a_retried_order_is_one_run_that_the_client_can_await(database_url: str) -> None:
    async def calls(http: httpx.AsyncClient) -> None:
        key = {"Idempotency-Key": "req-1"}
        first = await http.post("/orders", json=ORDER, headers=key)
        retry = await http.post("/orders", json=ORDER, headers=key)
        assert (first.status_code, retry.status_code) == (201, 200)
        run_id = first.json()["run_id"]
        assert retry.json()["run_id"] == run_id

        done = await http.get(f"/orders/{run_id}", params={"wait": 10})
        assert done.status_code == 200
        assert done.json() == {
            "run_id": run_id,
            "status": "completed",
            "context": {"reservation": "res_o-1", "charge": "ch_o-1_1200"},
        }

        other = await http.post("/orders", json={**ORDER, "amount_cents": 5}, headers=key)
        assert other.status_code == 409
        assert f"already started run {run_id}" in other.json()["detail"]

        plain = [(await http.post("/orders", json=ORDER)).json()["run_id"] for _ in range(2)]
        assert len({*plain, run_id}) == 3  # no key, no deduplication

    drive(database_url, calls)


def test_bad_requests_get_4xx_answers(database_url: str) -> None:
    async def calls(http: httpx.AsyncClient) -> None:
        invalid = await http.post("/orders", json={"order_id": "o-1"})
        assert invalid.status_code == 422
        blank_key = await http.post("/orders", json=ORDER, headers={"Idempotency-Key": ""})
        assert blank_key.status_code == 400
        assert "idempotency_key must be a non-empty string" in blank_key.json()["detail"]
        for run_id in ("not-a-uuid", "0190e3a4-0000-7000-8000-000000000000"):
            missing = await http.get(f"/orders/{run_id}", params={"wait": 1})
            assert missing.status_code == 404

    drive(database_url, calls)


def test_an_unfinished_run_answers_202_when_the_wait_runs_out(database_url: str) -> None:
    async def calls(http: httpx.AsyncClient) -> None:
        started = await http.post("/orders", json=ORDER)
        run_id = started.json()["run_id"]
        answer = await http.get(f"/orders/{run_id}", params={"wait": 0.3})
        assert answer.status_code == 202
        assert answer.json()["status"] == "pending"  # no worker in this app
        now = await http.get(f"/orders/{run_id}")
        assert (now.status_code, now.json()["status"]) == (202, "pending")

    drive(database_url, calls, with_worker=False)


def test_the_sample_runs(capsys: pytest.CaptureFixture[str]) -> None:
    body = fastapi_app.main()
    assert body["status"] == "completed"
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("201 {'run_id': ")
    assert " then 200 {'run_id': " in out[0]
    assert out[1].startswith("200 {'run_id': ")
