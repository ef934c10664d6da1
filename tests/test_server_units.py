"""The server's parts that need no model: prefix cache, ids, limits, FIFO worker, SSE, prompts."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from weprompt_cli.chat.formats import RAVEN, WORLD
from weprompt_cli.errors import UsageError
from weprompt_cli.server import sse
from weprompt_cli.server.errors import validation_message
from weprompt_cli.server.ids import discussion_session_name, validate_id
from weprompt_cli.server.prefix_cache import PrefixCache, prefix_keys
from weprompt_cli.chat.formats import render_messages as render
from weprompt_cli.server.settings import check_bind, is_loopback
from weprompt_cli.server.worker import FifoWorker, JobCancelled, QueueFull
from weprompt_cli.store.names import validate_name


# ------------------------------------------------------------------ prefix cache
def _cache(entries: int = 8, nbytes: int = 1000) -> PrefixCache[list[int]]:
    # A "state" here is a list of ints of len() bytes; clone copies it, as clone_state does.
    return PrefixCache(max_entries=entries, max_bytes=nbytes, clone=list, nbytes=len)


def test_prefix_keys_depend_on_the_token_prefix_not_on_its_split() -> None:
    a = prefix_keys([[1, 2], [3]])
    b = prefix_keys([[1], [2, 3]])
    assert a[-1] == b[-1]
    assert a[0] != b[0]
    assert prefix_keys([[1, 2, 3]], "model-a") != prefix_keys([[1, 2, 3]], "model-b")
    # 65536+ vocabularies: ids are not truncated to 16 bits.
    assert prefix_keys([[70000]]) != prefix_keys([[70000 - 65536]])


def test_prefix_cache_finds_the_longest_cached_prefix_and_returns_a_clone() -> None:
    cache = _cache()
    keys = prefix_keys([[1], [2], [3], [4]])
    state = [7, 7]
    cache.put(keys[0], state, tokens=1)
    cache.put(keys[2], [9, 9, 9], tokens=3)
    state.append(8)  # the cache kept its own copy
    index, found = cache.longest(keys) or (None, None)
    assert index == 2 and found == [9, 9, 9]
    found.append(1)  # forward writes into states: the cached one must not change
    assert cache.longest(keys[:3]) == (2, [9, 9, 9])
    assert cache.longest(keys[:2]) == (0, [7, 7])
    assert cache.longest(prefix_keys([[5]])) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.tokens_reused) == (3, 1, 3 + 3 + 1)


def test_prefix_cache_evicts_least_recently_used_by_entries() -> None:
    cache = _cache(entries=2)
    cache.put("a", [1], 1)
    cache.put("b", [1], 1)
    assert cache.get("a") == [1]  # "a" is now the most recently used
    cache.put("c", [1], 1)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.stats().evictions == 1


def test_prefix_cache_is_bounded_by_bytes() -> None:
    cache = _cache(entries=100, nbytes=10)
    cache.put("a", [0] * 4, 1)
    cache.put("b", [0] * 4, 1)
    cache.put("c", [0] * 4, 1)  # 12 bytes > 10: "a" goes
    assert "a" not in cache and len(cache) == 2 and cache.stats().bytes == 8
    assert cache.put("huge", [0] * 11, 1) is False  # never fits: not kept, nothing evicted for it
    assert len(cache) == 2
    cache.put("b", [0] * 2, 1)  # replacing an entry recounts its bytes
    assert cache.stats().bytes == 6


def test_prefix_cache_can_be_turned_off() -> None:
    cache = _cache(entries=0)
    assert not cache.enabled
    assert cache.put("a", [1], 1) is False
    assert cache.longest(["a"]) is None


# ------------------------------------------------------------------ ids and names
def test_discussion_names_are_deterministic_valid_and_distinct() -> None:
    assert discussion_session_name("alice", "42") == "u-alice--42"
    assert discussion_session_name("alice", 42) == "u-alice--42"
    assert discussion_session_name("a-", "b") != discussion_session_name("a", "b")
    long_user, long_disc = "u" * 60, "d" * 60
    name = discussion_session_name(long_user, long_disc)
    assert name.startswith("h-") and len(name) <= 64
    validate_name(name)
    assert name == discussion_session_name(long_user, long_disc)
    assert name != discussion_session_name(long_user, long_disc + "x")


@pytest.mark.parametrize(
    "bad", ["../../etc", "..", "a/b", "a\\b", "", ".hidden", "-opt", "x" * 129, "a b", "é", "a\x00b", True, None, 1.5]
)
def test_unsafe_ids_are_refused(bad: object) -> None:
    with pytest.raises(UsageError):
        validate_id(bad, "discussion_id")


def test_user_id_may_not_contain_the_name_separator() -> None:
    with pytest.raises(UsageError, match="--"):
        discussion_session_name("a--b", "c")


# ------------------------------------------------------------------ bind rules
def test_loopback_hosts_need_no_key_others_do() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(UsageError, match="API key"):
            check_bind(host, None)
        check_bind(host, "secret")


# ------------------------------------------------------------------ FIFO worker
def test_worker_runs_jobs_one_at_a_time_in_submission_order() -> None:
    order: list[int] = []
    running = 0
    overlap = False

    def job_fn(i: int):  # type: ignore[no-untyped-def]
        def run(job):  # type: ignore[no-untyped-def]
            nonlocal running, overlap
            running += 1
            overlap = overlap or running > 1
            time.sleep(0.01)
            job.emit(f"piece{i}")
            order.append(i)
            running -= 1
            return i

        return run

    async def main() -> list[object]:
        worker = FifoWorker(max_queue=100)
        jobs = [worker.submit(job_fn(i)) for i in range(10)]
        results = await asyncio.gather(*(j.wait() for j in jobs))
        worker.stop()
        return list(results)

    assert asyncio.run(main()) == list(range(10))
    assert order == list(range(10)) and not overlap


def test_worker_streams_pieces_and_reports_errors() -> None:
    def ok(job):  # type: ignore[no-untyped-def]
        for piece in ("a", "b", "c"):
            job.emit(piece)
        return "done"

    def boom(job):  # type: ignore[no-untyped-def]
        raise ValueError("nope")

    async def main() -> tuple[list[str], object]:
        worker = FifoWorker()
        job = worker.submit(ok)
        pieces = [p async for p in job.stream()]
        with pytest.raises(ValueError, match="nope"):
            await worker.submit(boom).wait()
        worker.stop()
        return pieces, job.result

    assert asyncio.run(main()) == (["a", "b", "c"], "done")


def test_worker_cancels_running_and_skips_waiting_jobs() -> None:
    gate = threading.Event()
    ran: list[str] = []

    def slow(job):  # type: ignore[no-untyped-def]
        gate.set()
        while not job.cancelled():  # the engine checks the flag between tokens
            time.sleep(0.005)
        ran.append("slow")
        return "stopped"

    def never(job):  # type: ignore[no-untyped-def]
        ran.append("never")

    async def main() -> object:
        worker = FifoWorker()
        first = worker.submit(slow)
        second = worker.submit(never)
        second.cancel()  # its client left while it waited
        await asyncio.get_running_loop().run_in_executor(None, gate.wait)
        first.cancel()
        result = await first.wait()
        with pytest.raises(JobCancelled):
            await second.wait()
        worker.stop()
        return result

    assert asyncio.run(main()) == "stopped"
    assert ran == ["slow"]


def test_worker_refuses_jobs_beyond_its_queue_bound() -> None:
    gate = threading.Event()

    async def main() -> None:
        worker = FifoWorker(max_queue=2)
        worker.submit(lambda job: gate.wait(5))
        await asyncio.sleep(0.05)  # the first job is running, no longer waiting
        worker.submit(lambda job: None)
        worker.submit(lambda job: None)
        with pytest.raises(QueueFull):
            worker.submit(lambda job: None)
        gate.set()
        worker.stop()

    asyncio.run(main())


# ------------------------------------------------------------------ SSE and errors
def test_sse_events_are_single_lines_and_parse_back() -> None:
    data = {"text": "line one\n\nline two", "n": 1}
    framed = sse.event(data)
    assert framed.startswith(b"data: ") and framed.endswith(b"\n\n") and framed.count(b"\n") == 2
    assert sse.parse(framed + sse.event({"x": 2}) + sse.DONE + sse.event({"after": 1})) == [data, {"x": 2}]


def test_validation_errors_read_as_one_line() -> None:
    assert validation_message([{"type": "missing", "loc": ("body", "user_id"), "msg": "Field required"}]) == (
        "missing field 'user_id'",
        "user_id",
    )
    message, _ = validation_message([{"type": "json_invalid", "loc": ("body", 3), "msg": "x", "ctx": {"error": "bad"}}])
    assert message == "the body is not valid JSON (bad)"


# ------------------------------------------------------------------ prompts
def test_messages_render_as_the_chat_format_writes_turns() -> None:
    segments = render(
        WORLD,
        [
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello!\n\n\nHow can I help?"),
            ("user", "Count"),
            ("user", "to three"),
        ],
    )
    assert [s.kind for s in segments] == ["prefix", "user", "assistant", "user"]
    text = "".join(s.text for s in segments)
    assert text == (
        "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\nHow can I help?\n\nUser: Count\nto three\n\nAssistant:"
    )
    # The same text a ChatSession feeds: persona prefix, then turn prompt + reply per turn.
    assert segments[1].text == WORLD.turn_prompt("Hi", needs_boundary=False)


def test_a_greeting_before_any_question_gets_its_label() -> None:
    segments = render(RAVEN, [("assistant", "Hi there"), ("user", "Hello")])
    assert segments[0].text == ""
    assert segments[1].text == "Alice: Hi there\n\n"
    assert segments[2].text == "Bob: Hello\n\nAlice:"
