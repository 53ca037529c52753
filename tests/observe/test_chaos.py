"""Chaos: the fault proxy adds latency and drops connections; one short Chaos Toolkit experiment runs on a
live stack and reports the steady state, SLIs, alerts and lost requests (slow: replicas start)."""

import asyncio
import shutil
import time

import pytest

from inferlab.observe.chaos.faults import FaultProxy
from inferlab.observe.chaos.toolkit import EXPERIMENTS, load, run_experiment, stack_config


async def _echo_server():
    async def handle(reader, writer):
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_proxy_latency_and_drops():
    async def go():
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]
        with FaultProxy(port, seed=1) as proxy:
            async def roundtrip():
                r, w = await asyncio.open_connection("127.0.0.1", proxy.port)
                t0 = time.perf_counter()
                w.write(b"ping")
                await w.drain()
                data = await r.read(100)
                w.close()
                return data, time.perf_counter() - t0
            assert (await roundtrip())[0] == b"ping"
            proxy.set(latency_s=0.3)
            data, elapsed = await roundtrip()
            assert data == b"ping" and elapsed >= 0.3
            proxy.set(drop_ratio=1.0)
            try:  # reset at once: an empty read or a reset error, whichever the client sees first
                assert (await roundtrip())[0] == b""
            except ConnectionResetError:
                pass
            assert proxy.num_dropped == 1
            with pytest.raises(ValueError, match="drop_ratio"):
                proxy.set(drop_ratio=2)
        server.close()
    asyncio.run(go())


def test_shipped_experiments_load_and_bad_config_is_named():
    names = sorted(p.stem for p in EXPERIMENTS.glob("*.yml"))
    assert names == ["burst", "kill-replica", "kv-exhaustion", "pause-replica", "proxy-drop", "proxy-latency"]
    for name in names:
        stack_config(load(name))
    with pytest.raises(ValueError, match="unknown keys"):
        stack_config({"configuration": {"inferlab_stack": {"replicas": 2}}})
    with pytest.raises(ValueError, match="no experiment 'nope'"):
        load("nope")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is missing (apt-get install prometheus)")
def test_a_short_experiment_on_a_live_stack(tmp_path):
    text = (EXPERIMENTS / "proxy-drop.yml").read_text()
    text = text.replace("{num_replicas: 2, rate_per_s: 4}", "{num_replicas: 1, rate_per_s: 4}")
    text = text.replace("drop_ratio: 0.5", "drop_ratio: 1.0").replace("pauses: {after: 20}", "pauses: {after: 6}")
    path = tmp_path / "drop-all.yml"
    path.write_text(text)
    report = run_experiment(path, warmup_s=4.0, recovery_s=4.0, journal_path=tmp_path / "journal.json")
    assert report["steady_state_before"] is True and report["steady_state_after"] is False
    slis = report["slis"]
    assert slis["before"]["availability"] == 1.0 and slis["during"]["availability"] < 0.5
    assert slis["after"]["availability"] == 1.0, slis["after"]
    assert report["num_requests_lost"] >= 10
    assert (tmp_path / "journal.json").exists()
