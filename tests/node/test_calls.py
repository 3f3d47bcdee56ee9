"""Calling functions and modules on a real daemon, as the den client will."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from den.node.caller import AsyncNodeClient, NodeClient
from den.node.errors import CallTimeout, ObjectNotFound, RemoteError, WorkerCrashed


def add(a, b):
    return a + b


class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self, by=1):
        self.n += by
        return self.n

    def __call__(self):
        return self.n


class CustomError(Exception):
    pass


def test_function_by_value(node: NodeClient) -> None:
    node.put_function("add", add)
    assert node.call("add", args=(2, 3)) == 5
    assert node.call("add", kwargs={"a": "x", "b": "y"}) == "xy"


def test_function_defined_locally_is_sent_by_value(node: NodeClient) -> None:
    offset = 100

    def shifted(x):
        return x + offset

    node.put_function("shifted", shifted)
    assert node.call("shifted", args=(1,)) == 101


def test_module_keeps_state_between_calls(node: NodeClient) -> None:
    info = node.put_module("counter", Counter, init_args=(10,))
    assert "inc" in info["methods"]
    assert node.call("counter", "inc") == 11
    assert node.call("counter", "inc", kwargs={"by": 5}) == 16
    assert node.call("counter", "call") == 16  # __call__


def test_module_instance_sent_with_its_state(node: NodeClient) -> None:
    c = Counter(41)
    node.put_module("counter_instance", c)
    assert node.call("counter_instance", "inc") == 42


def test_exception_keeps_type_and_remote_traceback(node: NodeClient) -> None:
    def fails(x):
        raise CustomError(f"bad input {x}")

    node.put_function("fails", fails)
    with pytest.raises(CustomError, match="bad input 7") as info:
        node.call("fails", args=(7,))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Remote traceback" in notes
    assert "in fails" in notes
    assert "in fails" in info.value.remote_traceback  # type: ignore[attr-defined]


def test_unpicklable_exception_becomes_remote_error(node: NodeClient) -> None:
    def fails():
        class Local(Exception):
            def __reduce__(self):
                raise TypeError("no")

        raise Local("cannot travel")

    node.put_function("fails_local", fails)
    with pytest.raises(RemoteError, match="cannot travel") as info:
        node.call("fails_local")
    assert "Local" in info.value.remote_type


def test_missing_object_is_not_found(node: NodeClient) -> None:
    with pytest.raises(ObjectNotFound):
        node.call("no_such_object")


def test_async_function(node: NodeClient) -> None:
    async def slow_add(a, b):
        import asyncio

        await asyncio.sleep(0.01)
        return a + b

    node.put_function("slow_add", slow_add)
    assert node.call("slow_add", args=(1, 2)) == 3


def test_generator_streams_items(node: NodeClient) -> None:
    def squares(n):
        for i in range(n):
            yield i * i

    node.put_function("squares", squares)
    assert list(node.call("squares", args=(5,))) == [0, 1, 4, 9, 16]


def test_async_generator(node: NodeClient) -> None:
    async def agen(n):
        for i in range(n):
            yield i

    node.put_function("agen", agen)
    assert list(node.call("agen", args=(3,))) == [0, 1, 2]


def test_generator_items_arrive_before_it_ends(node: NodeClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    def gated(path):
        import os
        import time

        yield "first"
        while not os.path.exists(path):
            time.sleep(0.01)
        yield "second"

    node.put_function("gated", gated)
    it = node.call("gated", args=(str(gate),))
    assert next(it) == "first"  # would hang if items were buffered until the end
    gate.touch()
    assert list(it) == ["second"]


def test_stdout_streams_while_the_call_runs(node: NodeClient, tmp_path: Path) -> None:
    release = tmp_path / "release"

    def chatty(path):
        import os
        import time

        print("started", flush=False)
        while not os.path.exists(path):
            time.sleep(0.01)
        print("finished")
        return "done"

    node.put_function("chatty", chatty)
    got: list[tuple[str, str]] = []
    first_line = threading.Event()

    def on_output(stream: str, text: str) -> None:
        got.append((stream, text))
        first_line.set()

    result: list[str] = []
    caller = threading.Thread(
        target=lambda: result.append(node.call("chatty", args=(str(release),), stream=on_output))
    )
    caller.start()
    try:
        assert first_line.wait(10), "no output arrived while the call was running"
        assert got == [("stdout", "started\n")]
        assert not result
    finally:
        release.touch()
        caller.join(10)
    assert result == ["done"]
    assert ("stdout", "finished\n") in got


def test_stderr_and_logging_stream_back(node: NodeClient) -> None:
    def noisy():
        import logging
        import sys

        sys.stderr.write("to stderr\n")
        logging.getLogger("mylib").info("a log line")
        return 1

    node.put_function("noisy", noisy)
    got: list[tuple[str, str]] = []
    assert node.call("noisy", stream=lambda s, t: got.append((s, t))) == 1
    assert ("stderr", "to stderr\n") in got
    logs = [t for s, t in got if s == "log"]
    assert len(logs) == 1 and "INFO | mylib | a log line" in logs[0]


def test_concurrent_calls(node: NodeClient) -> None:
    node.put_function("add", add)

    def worker(k: int) -> list[int]:
        return [node.call("add", args=(k, i)) for i in range(50)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert results == [[k + i for i in range(50)] for k in range(8)]


def test_concurrent_slow_calls_overlap(node: NodeClient) -> None:
    def nap():
        import time

        time.sleep(0.5)
        return 1

    node.put_function("nap", nap)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(lambda _: node.call("nap"), range(8))) == 8
    assert time.monotonic() - started < 2.5


def test_call_timeout(node: NodeClient) -> None:
    def sleepy(seconds):
        import time

        time.sleep(seconds)
        return "woke"

    node.put_function("sleepy", sleepy)
    started = time.monotonic()
    with pytest.raises(CallTimeout, match="did not finish within 0.5 s"):
        node.call("sleepy", args=(3,), timeout=0.5)
    assert time.monotonic() - started < 2
    assert isinstance(CallTimeout("x"), TimeoutError)
    assert node.call("sleepy", args=(0,), timeout=5) == "woke"


def test_worker_killed_mid_call(node: NodeClient) -> None:
    def die():
        import os

        os.kill(os.getpid(), 9)

    env = {"name": "crashy"}
    node.put_function("die", die, env=env)
    node.put_module("crashy_counter", Counter, init_args=(5,), env=env)
    assert node.call("crashy_counter", "inc") == 6
    with pytest.raises(WorkerCrashed) as info:
        node.call("die")
    assert info.value.env == "crashy"
    assert info.value.exit_code == -9
    assert "SIGKILL" in str(info.value)
    # The worker is restarted and its objects re-created from what was put.
    assert node.call("crashy_counter", "inc") == 6
    # Other envs never noticed.
    node.put_function("add", add)
    assert node.call("add", args=(1, 1)) == 2


def test_exit_in_worker_is_reported(node: NodeClient) -> None:
    def leave():
        import os

        os._exit(3)

    node.put_function("leave", leave, env="leaver")
    with pytest.raises(WorkerCrashed, match="exited with code 3"):
        node.call("leave")


def test_json_call_as_curl_would(node: NodeClient, daemon) -> None:
    node.put_function("add", add)
    # curl -X POST .../call -d '{"args":[1,2]}' sends a form content type.
    resp = httpx.post(f"{daemon.url}/objects/add/call", content=b'{"args":[1,2]}',
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200
    assert resp.json() == {"result": 3, "output": []}
    resp = httpx.post(f"{daemon.url}/objects/add/call", json={"args": [1], "kwargs": {"b": 4}})
    assert resp.json()["result"] == 5


def test_json_call_errors_and_streams(node: NodeClient, daemon) -> None:
    def shout(word):
        print("saying", word)
        if word == "boom":
            raise ValueError("no booms")
        return word.upper()

    node.put_function("shout", shout)
    resp = httpx.post(f"{daemon.url}/objects/shout/call", json={"args": ["boom"]})
    assert resp.status_code == 500
    err = resp.json()["error"]
    assert err["code"] == "remote_exception"
    assert err["type"] == "ValueError"
    assert "no booms" in err["traceback"]
    resp = httpx.post(f"{daemon.url}/objects/shout/call", json={"args": ["hi"]},
                      headers={"accept": "application/x-ndjson"})
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert lines == [{"stream": "stdout", "text": "saying hi\n"}, {"result": "HI"}]
    resp = httpx.post(f"{daemon.url}/objects/nope/call", json={})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_listing_and_deleting_objects(node: NodeClient) -> None:
    node.put_function("temp", add)
    assert "temp" in {o["name"] for o in node.list_objects()}
    node.delete_object("temp")
    assert "temp" not in {o["name"] for o in node.list_objects()}
    with pytest.raises(ObjectNotFound):
        node.call("temp", args=(1, 2))
    assert node.health()["status"] == "ok"


def test_async_client(node: NodeClient, daemon) -> None:
    import asyncio

    node.put_function("add", add)

    def gen(n):
        yield from range(n)

    node.put_function("gen", gen)

    async def main() -> tuple[list[int], list[int]]:
        async with AsyncNodeClient(daemon.url, stream=None) as client:
            sums = await asyncio.gather(*(client.call("add", args=(i, i)) for i in range(20)))
            items = [x async for x in await client.call("gen", args=(3,))]
            return list(sums), items

    sums, items = asyncio.run(main())
    assert sums == [2 * i for i in range(20)]
    assert items == [0, 1, 2]


def test_large_numpy_array_round_trip(node: NodeClient) -> None:
    np = pytest.importorskip("numpy")

    def double(a):
        return a * 2

    node.put_function("double", double)
    a = np.arange(3_000_000, dtype=np.float64)
    assert (node.call("double", args=(a,)) == a * 2).all()


@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_a_bad_timeout_header_is_refused_and_leaves_no_call_in_flight(
        node: NodeClient, daemon, value: str) -> None:
    # "nan" once made scheduling the timeout raise after the call was opened,
    # so the call stayed counted in flight for good and autostop never came.
    node.put_function("add", add, env={"name": "timeouts"})
    resp = httpx.post(f"{daemon.url}/objects/add/call", json={"args": [1, 2]},
                      headers={"x-den-timeout": value})
    assert resp.status_code == 400
    assert "x-den-timeout" in resp.json()["error"]["message"]
    time.sleep(0.2)
    assert httpx.get(f"{daemon.url}/envs/timeouts").json()["calls_in_flight"] == 0
