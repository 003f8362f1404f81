"""When a worker's loop must claim, and when it is idle: the bookkeeping of its threads.

Each test is a sequence of what the loop, the delivery threads and starts report, and checks
whether the loop is woken (``thread_ended``, ``end_reservation``) and whether a start may
have a thread (``reserve``).
"""

from __future__ import annotations

from squidmesh_sdk.executors.threads import DeliveryThreads


def _never() -> bool:
    return False


def _delivered_and_found_nothing(threads: DeliveryThreads) -> object:
    """A thread of ``threads`` delivered job 7; its next-job claim found nothing: its token."""
    token = object()
    threads.occupy(token, 7)
    threads.begin_next_claim(token)
    threads.delivery_ended(token, found_nothing=True)
    return token


def _one_thread_that_found_nothing() -> tuple[DeliveryThreads, object]:
    """One thread, delivering a job; its next-job claim found nothing and committed."""
    threads = DeliveryThreads(1)
    assert threads.begin_claim() == 1
    threads.end_claim(1, 1)
    token = _delivered_and_found_nothing(threads)
    return threads, token


def test_a_thread_whose_last_claim_found_nothing_ends_without_waking_the_loop() -> None:
    threads, token = _one_thread_that_found_nothing()
    assert threads.thread_ended(token) is False
    assert threads.free() == 1
    assert threads.reserve(_never) is not None  # idle: a start may have the thread


def test_a_thread_that_did_not_claim_its_next_job_wakes_the_loop() -> None:
    threads = DeliveryThreads(1)
    token = object()
    threads.occupy(token, 7)
    threads.delivery_ended(token, found_nothing=False)
    assert threads.thread_ended(token) is True


def test_a_wake_with_every_thread_busy_is_owed_by_the_next_thread_to_end() -> None:
    threads, token = _one_thread_that_found_nothing()
    assert threads.begin_claim() == 0  # woken, no free thread
    assert threads.thread_ended(token) is True


def test_a_thread_s_next_claim_pays_what_it_owed() -> None:
    threads = DeliveryThreads(1)
    token = object()
    threads.occupy(token, 7)
    assert threads.begin_claim() == 0  # owed from here
    threads.begin_next_claim(token)  # this claim sees the job that woke the loop
    threads.delivery_ended(token, found_nothing=True)
    assert threads.thread_ended(token) is False


def test_a_claim_capped_by_the_free_threads_makes_the_busy_ones_owe() -> None:
    threads = DeliveryThreads(2)
    busy = _delivered_and_found_nothing(threads)
    free = threads.begin_claim()
    assert free == 1
    threads.end_claim(free, 1)  # took as many as it could: more may be due
    assert threads.thread_ended(busy) is True


def test_no_thread_is_reserved_while_the_loop_claims_or_before_it_found_nothing() -> None:
    threads = DeliveryThreads(2)
    assert threads.reserve(_never) is None  # no claim yet: not known idle
    free = threads.begin_claim()
    assert threads.reserve(_never) is None  # claiming
    threads.end_claim(free, None)  # failed: not idle either
    assert threads.reserve(_never) is None
    threads.end_claim(threads.begin_claim(), 0)
    assert threads.reserve(lambda: True) is None  # refused (stopping, or a wake waiting)
    assert threads.reserve(_never) is not None


def test_a_thread_ending_after_a_newer_loop_claim_does_not_make_the_worker_idle() -> None:
    threads = DeliveryThreads(3)
    token = _delivered_and_found_nothing(threads)
    free = threads.begin_claim()  # begun after the thread's claim
    assert free == 2
    threads.end_claim(free, 1)  # found a job: the queues were not empty then
    assert threads.thread_ended(token) is False
    assert threads.reserve(_never) is None


def test_a_reserved_thread_given_back_empty_wakes_a_loop_that_found_no_thread() -> None:
    threads = DeliveryThreads(1)
    threads.end_claim(threads.begin_claim(), 0)
    token = threads.reserve(_never)
    assert token is not None
    assert threads.free() == 0
    assert threads.begin_claim() == 0  # woken while the only thread is reserved
    assert threads.end_reservation(token, handed=False) is True
    assert threads.free() == 1


def test_a_reserved_thread_given_back_empty_is_quiet_when_nothing_woke_the_loop() -> None:
    threads = DeliveryThreads(1)
    threads.end_claim(threads.begin_claim(), 0)
    token = threads.reserve(_never)
    assert token is not None
    assert threads.end_reservation(token, handed=False) is False


def test_a_reserved_thread_handed_a_job_is_busy_until_it_ends() -> None:
    threads = DeliveryThreads(1)
    threads.end_claim(threads.begin_claim(), 0)
    token = threads.reserve(_never)
    assert token is not None
    threads.hand_over(token, 9)
    assert threads.end_reservation(token, handed=True) is False
    assert (threads.free(), threads.job_ids()) == (0, [9])
    assert threads.reserve(_never) is None
