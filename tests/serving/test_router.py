"""`inferlab route` in front of real `inferlab serve` replica processes (tiny model).

One module-scoped set of replicas; each test runs its own router (in a thread) over them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time

import aiohttp
import pytest

from inferlab.bench.serverproc import server_process
from inferlab.policies.route import make_prefix_aware, round_robin, session_affinity
from inferlab.policies.shape import SHAPERS, parse_tenants
from inferlab.serving.router import RouterConfig, router_thread

pytestmark = pytest.mark.slow
REPLICA_ARGS = ["--max-num-seqs", "4", "--num-kv-blocks", "128", "--max-model-len", "256"]


@pytest.fixture(scope="module")
def replicas():
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(server_process(REPLICA_ARGS))[0] for _ in range(2)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _post(session, url, body, headers=None, raw: bytes | None = None):
    kw = {"data": raw} if raw is not None else {"json": body}
    try:
        async with session.post(url + "/v1/completions", headers=headers or {}, **kw) as r:
            text = await r.text()
            return r.status, text, r.headers
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return 0, f"{type(exc).__name__}: {exc}", {}


def _completion(i: int, stream: bool = False, max_tokens: int = 4) -> dict:
    return {"prompt": [(7 * i + k) % 200 for k in range(20)], "max_tokens": max_tokens, "temperature": 0.0,
            "stream": stream, "ignore_eos": True}


def test_pass_through_plain_and_streamed(replicas) -> None:
    async def go(base):
        async with aiohttp.ClientSession() as s:
            direct = json.loads((await _post(s, replicas[0], _completion(1)))[1])
            status, text, _ = await _post(s, base, _completion(1))
            assert status == 200
            assert json.loads(text)["choices"][0]["token_ids"] == direct["choices"][0]["token_ids"]
            status, text, headers = await _post(s, base, _completion(1, stream=True))
            assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
            events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            ids = [t for e in events[:-1] for t in json.loads(e)["choices"][0]["token_ids"]]
            assert ids == direct["choices"][0]["token_ids"]
            async with s.get(base + "/v1/models") as r:
                assert r.status == 200 and (await r.json())["data"]

    with router_thread(replicas, RouterConfig(round_robin)) as (base, _):
        asyncio.run(go(base))


def test_bad_input_gets_a_named_error_while_others_carry_on(replicas) -> None:
    tenants = parse_tenants("a:rps=100;slow:rps=1,burst=1")

    async def go(base):
        async with aiohttp.ClientSession() as s:
            results = await asyncio.gather(
                _post(s, base, None, {"X-Tenant": "a"}, raw=b'{"prompt": [1, 2'),
                _post(s, base, _completion(2), {"X-Tenant": "mallory"}),
                _post(s, base, None, {"X-Tenant": "a"}, raw=b"[1, 2]"),
                *(_post(s, base, _completion(i), {"X-Tenant": "a"}) for i in range(4)))
            (s1, t1, _), (s2, t2, _), (s3, t3, _) = results[:3]
            assert s1 == 400 and "not valid JSON" in json.loads(t1)["error"]["message"]
            assert s2 == 403 and "mallory" in json.loads(t2)["error"]["message"]
            assert s3 == 400 and "JSON object" in t3
            s4, t4, _ = await _post(s, base, _completion(2))
            assert s4 == 403 and "missing header X-Tenant" in t4
            assert [r[0] for r in results[3:]] == [200] * 4
            first = await _post(s, base, _completion(5), {"X-Tenant": "slow"})
            second = await _post(s, base, _completion(6), {"X-Tenant": "slow"})
            assert first[0] == 200 and second[0] == 429 and int(second[2]["Retry-After"]) >= 1
            assert "slow" in json.loads(second[1])["error"]["message"]

    with router_thread(replicas, RouterConfig(round_robin, tenants=tenants)) as (base, _):
        asyncio.run(go(base))
        exposed = _scrape(base)
    counts = {dict(labels)["code"]: v for (name, labels), v in exposed.items()
              if name == "inferlab_router_requests_total" and v}  # failure codes are exported at 0 from the start
    assert counts == {"400": 2, "403": 2, "200": 5, "429": 1}, counts


def test_no_healthy_replica_is_a_503_naming_it() -> None:
    dead = f"http://127.0.0.1:{_free_port()}"

    async def go(base):
        async with aiohttp.ClientSession() as s:
            status, text, _ = await _post(s, base, _completion(0))
            assert status == 503 and dead in json.loads(text)["error"]["message"]
            async with s.get(base + "/health") as r:
                assert r.status == 503

    with router_thread([dead], RouterConfig()) as (base, _):
        asyncio.run(go(base))


def test_prefix_and_session_routing_stick(replicas) -> None:
    async def go(base, header):
        async with aiohttp.ClientSession() as s:
            seen = []
            for i in range(6):
                body = _completion(0) if header is None else _completion(i)
                status, _, headers = await _post(s, base, body, {} if header is None else {"X-Session-Id": header})
                assert status == 200
                seen.append(headers["X-Inferlab-Replica"])
            return seen

    with router_thread(replicas, RouterConfig(make_prefix_aware())) as (base, _):
        assert len(set(asyncio.run(go(base, None)))) == 1  # same prompt, same warm replica
    with router_thread(replicas, RouterConfig(session_affinity)) as (base, _):
        assert len(set(asyncio.run(go(base, "user-42")))) == 1


def test_vtc_serves_a_light_tenant_ahead_of_a_flood(replicas) -> None:
    config = RouterConfig(round_robin, SHAPERS["vtc"], max_outstanding_per_replica=1)

    async def go(base):
        done: list[str] = []

        async def one(tenant, i, delay):
            await asyncio.sleep(delay)
            status, _, _ = await _post(s, base, _completion(i, max_tokens=48), {"X-Tenant": tenant})
            assert status == 200
            done.append(tenant)

        async with aiohttp.ClientSession() as s:
            await asyncio.gather(*(one("heavy", i, 0.0) for i in range(12)), one("light", 99, 0.2))
        return done

    with router_thread(replicas, config) as (base, rt):
        done = asyncio.run(go(base))
        assert rt.stats_json()["num_queued"] == 0
    assert done.index("light") < 6  # FCFS would finish it last (13th)


def test_tenant_share_keeps_a_slot_free_for_a_light_tenant(replicas) -> None:
    """With max_tenant_share 0.5 of 2 slots the flood holds one; the light request starts at once, never
    queued behind the flood (without the share it would wait in the gate's queue for a heavy one to end)."""
    config = RouterConfig(round_robin, SHAPERS["vtc"], max_outstanding_per_replica=1, max_tenant_share=0.5)

    async def go(base, rt):
        gate = rt.gate
        async with aiohttp.ClientSession() as s:
            heavy = [asyncio.create_task(_post(s, base, _completion(i, max_tokens=48), {"X-Tenant": "heavy"}))
                     for i in range(6)]
            end = time.monotonic() + 30
            while sum(q.tenant == "heavy" for q, _ in gate.queue) < 3:  # the flood is queued behind its slot
                assert time.monotonic() < end and not all(t.done() for t in heavy), "the flood never queued"
                await asyncio.sleep(0.002)
            at_send = dict(gate.num_in_flight_by_tenant)
            light = asyncio.create_task(_post(s, base, _completion(99, max_tokens=48), {"X-Tenant": "light"}))
            seen_queued = False
            while not gate.num_in_flight_by_tenant.get("light") and not light.done():
                seen_queued |= any(q.tenant == "light" for q, _ in gate.queue)
                await asyncio.sleep(0.001)
            statuses = [r[0] for r in await asyncio.gather(light, *heavy)]
        return at_send, seen_queued, statuses

    with router_thread(replicas, config) as (base, rt):
        at_send, seen_queued, statuses = asyncio.run(go(base, rt))
    assert statuses == [200] * 7, statuses
    assert at_send.get("heavy") == 1, at_send  # the flood never held both slots
    assert not seen_queued, "the light tenant's request waited in the queue behind the flood"


def test_killed_replica_is_ejected_and_unstarted_requests_are_not_lost(replicas) -> None:
    with server_process(REPLICA_ARGS) as (victim, proc):
        urls = [*replicas, victim]

        async def go(base, rt):
            async def one(i):
                await asyncio.sleep(0.1 * i)
                return await _post(s, base, _completion(i, stream=True, max_tokens=96))

            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
                tasks = [asyncio.ensure_future(one(i)) for i in range(40)]
                await asyncio.sleep(1.5)
                on_victim = next(r for r in rt.pool.replicas if r.url == victim).num_outstanding
                proc.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                results = await asyncio.gather(*tasks)
            return results, on_victim, killed_at

        with router_thread(urls, RouterConfig(round_robin), health_interval_s=0.5) as (base, rt):
            results, on_victim, killed_at = asyncio.run(go(base, rt))
            stats = rt.stats_json()
            exposed = _scrape(base)
            state = next(r for r in rt.pool.replicas if r.url == victim)
            assert not state.is_healthy and state.ejected_at_s - killed_at < 5.0
    # a request cut off mid-stream on the victim ends without [DONE]; every other one completes
    complete = [r for r in results if r[0] == 200 and r[1].rstrip().endswith("data: [DONE]")]
    print(f"killed with {on_victim} on the victim: {len(results) - len(complete)} cut, "
          f"{stats['num_retries']} retried, victim: {stats['replicas'][2]}")
    assert len(results) - len(complete) <= on_victim
    assert len(complete) >= 40 - on_victim
    assert all("cut off" in r[1] for r in results if r not in complete)  # told, not left hanging
    # /metrics tells the clients' side: complete answers as 200, the abandoned streams as "cut"
    assert exposed[("inferlab_router_requests_total", (("code", "200"),))] == len(complete)
    assert exposed.get(("inferlab_router_requests_total", (("code", "cut"),)), 0) == len(results) - len(complete)
    assert exposed[("inferlab_router_replica_healthy", (("replica", victim),))] == 0
    assert exposed[("inferlab_router_replica_ejections_total", (("replica", victim),))] >= 1
    assert exposed[("inferlab_router_retries_total", ())] == stats["num_retries"]


def test_router_reads_replica_load_from_metrics_and_ejects_an_idle_dead_replica(replicas) -> None:
    """The health loop reads each replica's /metrics (KV usage, queued and running requests) into the
    state policies see; a replica killed while idle is ejected by /health alone within 5 s (default 1 s loop)."""
    seen: list[tuple] = []
    holder: list = []

    def spy(ctx):  # a policy that records what it is shown beside what the router holds
        held = tuple(r.kv_utilization for r in holder[0].pool.healthy()) if holder else ()
        seen.append((tuple(ctx.kv_utilization), held, tuple(ctx.num_waiting)))
        return 0, ctx.policy_state

    with server_process(REPLICA_ARGS) as (victim, proc):
        with router_thread([*replicas, victim], RouterConfig(spy)) as (base, rt):
            holder.append(rt)

            async def go():
                async with aiohttp.ClientSession() as s:
                    busy = [asyncio.ensure_future(_post(s, base, _completion(i, max_tokens=200))) for i in range(6)]
                    scraped = 0.0
                    while not scraped and not all(b.done() for b in busy):  # replica 0 holds the six
                        await asyncio.sleep(0.1)
                        scraped = max(r.kv_utilization for r in rt.pool.replicas)
                    probe = await _post(s, base, _completion(9))
                    return scraped, probe, await asyncio.gather(*busy)

            scraped, probe, busy = asyncio.run(go())
            assert probe[0] == 200 and [b[0] for b in busy] == [200] * 6
            assert scraped > 0, "the router never read a busy replica's KV usage from its /metrics"
            assert all(r["metrics_at_s"] is not None for r in rt.stats_json()["replicas"])
            assert seen[-1][0] == seen[-1][1], seen[-1]  # the policy is shown what the router read
            proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            victim_state = next(r for r in rt.pool.replicas if r.url == victim)
            while victim_state.is_healthy and time.monotonic() - killed_at < 10:
                time.sleep(0.05)
            assert not victim_state.is_healthy and victim_state.ejected_at_s - killed_at < 5.0, victim_state


def test_parse_replica_metrics() -> None:
    from inferlab.serving.replicas import parse_replica_metrics

    text = ('# TYPE vllm:num_requests_waiting gauge\n'
            'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
            'vllm:num_requests_waiting{engine="1",model_name="m"} 2.0\n'
            '# TYPE vllm:kv_cache_usage_perc gauge\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5\n'
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25\n')
    assert parse_replica_metrics(text) == {"num_waiting": 5.0, "kv_utilization": 0.375}
    assert parse_replica_metrics("") == {}


def _scrape(base: str) -> dict:
    """{(sample name, sorted labels): value} from the router's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_unknown_fields_are_refused_unless_the_server_ignores_them() -> None:
    """vllm-router adds `no_stop_trim`: refused by default (400 naming it), dropped with --ignore-unknown-fields."""
    from inferlab.serving.openai_api import ApiError, Limits, parse_completion

    body = {"prompt": [1, 2, 3], "max_tokens": 2, "no_stop_trim": True}
    with pytest.raises(ApiError, match="no_stop_trim"):
        parse_completion(body, Limits("m", 256, 64, 1024))
    request = parse_completion(body, Limits("m", 256, 64, 1024, ignore_unknown_fields=True))
    assert request.prompt_token_ids == [1, 2, 3] and request.params.max_tokens == 2
