"""A simulated fleet: trace in, per-request records and a replica timeline out.

Floor 2 of inferlab. `simulate(trace, step_model, config, autoscaler, router)` is a
discrete-event loop over arrivals and timers (autoscaler ticks every
`control_period_s`, replicas ready after `cold_start_s`, spot preemption notices and
preemptions). Replicas (`sim/replica.py`) advance lazily between events; the
autoscaler and the router are plain functions from `inferlab.policies`.

- Scale up: new replicas start (billed from launch), ready one cold start later.
  A share `spot_fraction` of the fleet runs on spot capacity, or as many as a spot
  policy (`inferlab.policies.spot`, asked at each launch) wants.
- Scale down: starting replicas are cancelled first, then the least-loaded running
  ones drain (their not-yet-started requests are re-routed; they finish the rest).
- Spot: each spot replica is preempted after an exponential lifetime; on the notice
  it stops taking work and a replacement starts; at preemption its unfinished
  requests are re-routed and start over (nothing is lost). Their arrival time stays.
- Requests queue at the cluster when no replica can take them (none ready, or every
  replica has `max_ongoing_requests`, Ray Serve's per-replica limit).
Costs = GPU-hours x price, per pool. The settings (`ClusterConfig`), a replica's
lifecycle (`Node`), the result (`SimResult`) and the bill live in `sim/fleet.py`;
they are re-exported here.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections import deque
from typing import Any, Sequence

from inferlab.metrics import RequestRecord
from inferlab.policies.autoscale import AutoscalingContext, Policy
from inferlab.policies.route import RouteContext, Router, least_outstanding
from inferlab.policies.shape import Queued, ShapeContext, Shaper
from inferlab.policies.spot import SpotContext, SpotPolicy
from inferlab.sim.fleet import DRAINING, POOLS, RUNNING, STARTING, ClusterConfig, Node, Pool, SimResult, bill_nodes
from inferlab.sim.replica import Replica, SimRequest
from inferlab.sim.steptime import StepTimeModel
from inferlab.traces import TraceRequest

__all__ = ["Cluster", "ClusterConfig", "SimResult", "simulate"]

MAX_DRAIN_S = 7 * 24 * 3600.0  # give up when the fleet cannot finish the trace within a week


class EventKind(enum.StrEnum):
    """What the cluster's event heap holds, besides arrivals."""

    TICK = "tick"  # a control period: autoscaler, spot policy, timeline row
    READY = "ready"  # a replica's cold start is over
    NOTICE = "notice"  # the spot market's interruption notice for a replica
    INTERRUPT = "interrupt"  # the notice ran out: the spot replica is taken back


class _PendingPrefill(Sequence[int]):
    """Per-node pending prefill tokens, computed only for the nodes a router asks about (O(queue) each)."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [n.replica.num_pending_prefill_tokens for n in self.nodes[index]]
        return self.nodes[index].replica.num_pending_prefill_tokens


class Cluster:
    """The event loop; use `simulate()`."""

    def __init__(self, step_model: StepTimeModel, config: ClusterConfig, autoscaler: Policy,
                 router: Router = least_outstanding, spot_policy: SpotPolicy | None = None,
                 shaper: Shaper | None = None) -> None:
        self.step_model, self.config, self.autoscaler, self.router = step_model, config, autoscaler, router
        self.shaper = shaper
        self.shape_state: dict[str, Any] = {}
        self.routed_to: dict[int, int] = {}
        self.spot_policy = spot_policy
        self.spot_state: dict[str, Any] = {}
        self.notice_times: list[float] = []
        self.rng = random.Random(config.seed)
        self.nodes: list[Node] = []
        self.events: list[tuple[float, int, str, Any]] = []
        self.pending: deque[SimRequest] = deque()
        self.num_in_flight_by_tenant: dict[str, int] = {}  # dispatched, not finished (tenant shares)
        self.done: list[tuple[SimRequest, float]] = []
        self.target = 0
        self.policy_state: dict[str, Any] = {}
        self.route_state: dict[str, Any] = {}
        self.num_scale_actions = self.num_spot_interruptions = self.num_requeued = 0
        self.last_up: float | None = None
        self.last_down: float | None = None
        self.timeline: list[dict[str, float]] = []
        self._seq = 0

    # ------------------------------------------------------------------ plumbing
    def _push(self, time_s: float, kind: EventKind, payload: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self.events, (time_s, self._seq, kind, payload))

    def _running(self) -> list[Node]:
        return [n for n in self.nodes if n.state == RUNNING]

    def _on_finish(self, node: Node, request: SimRequest, time_s: float) -> None:
        self.done.append((request, time_s))
        self.num_in_flight_by_tenant[request.tenant] -= 1
        node.last_finish_s = time_s
        limit = self.config.max_ongoing_requests
        if self.pending and node.state == RUNNING and limit is not None and node.replica.num_outstanding < limit:
            request = self._pop_pending(time_s)
            if request is not None:
                self._assign(node, request)

    def _launch(self, now: float, pool: str) -> None:
        node = Node(None, pool, now)  # type: ignore[arg-type]
        node.replica = Replica(len(self.nodes), self.step_model, self.config.replica, now,
                               lambda r, t, n=node: self._on_finish(n, r, t))
        self.nodes.append(node)
        self._push(now + self.config.cold_start_s, EventKind.READY, node)
        if pool == Pool.SPOT:
            self._push(now + self.rng.expovariate(1.0 / self.config.spot_mean_lifetime_s), EventKind.NOTICE, node)

    # ------------------------------------------------------------------ routing
    def _advance_running(self, now: float) -> None:
        running = self._running()
        if not self.pending or self.config.max_ongoing_requests is None:
            for node in running:
                node.replica.advance(now)
            return
        # Requests wait at the cluster: advance in time order so the replica that frees first takes them.
        limit = self.config.max_ongoing_requests
        while True:
            behind = [n for n in running if n.replica.now_s < now]
            if not behind:
                return
            if not self.pending:
                for node in behind:
                    node.replica.advance(now)
                return
            node = min(behind, key=lambda n: n.replica.now_s)
            replica = node.replica
            if replica.num_outstanding < limit:
                request = self._pop_pending(replica.now_s)
                if request is None:  # what waits is over its tenant's share: a finish dispatches it
                    for behind_node in behind:
                        behind_node.replica.advance(now)
                    return
                self._assign(node, request)
                continue
            until = min([now] + [n.replica.now_s for n in behind if n is not node])
            replica.advance(until if until > replica.now_s else replica.now_s + 1e-9)  # >= one step

    def _tenant_has_room(self, tenant: str) -> bool:
        """Below `max_tenant_share` of the running fleet's request slots (always, without a share)."""
        share = self.config.max_tenant_share
        if share is None:
            return True
        slots = self.config.max_ongoing_requests * len(self._running())
        return self.num_in_flight_by_tenant.get(tenant, 0) < max(1, int(share * slots))

    def _pop_pending(self, now: float) -> SimRequest | None:
        """The next request waiting at the cluster that its tenant's share lets go: the oldest, or the
        shaper's pick among those; None when none may go."""
        if self.config.max_tenant_share is None:
            positions = range(len(self.pending))
        else:
            room = {t: self._tenant_has_room(t) for t in {r.tenant for r in self.pending}}
            positions = [i for i, r in enumerate(self.pending) if room[r.tenant]]
            if not positions:
                return None
        if self.shaper is None:
            index = positions[0]
        else:
            queue = [Queued(self.pending[i].tenant, self.pending[i].num_prompt_tokens,
                            self.pending[i].num_output_tokens, self.pending[i].arrival_time_s) for i in positions]
            pick, self.shape_state = self.shaper(ShapeContext(queue, now, self.shape_state))
            index = positions[pick]
        request = self.pending[index]
        del self.pending[index]
        return request

    def _assign(self, node: Node, request: SimRequest) -> None:
        self.num_in_flight_by_tenant[request.tenant] = self.num_in_flight_by_tenant.get(request.tenant, 0) + 1
        self.routed_to[request.index] = node.replica.replica_id
        node.replica.add(request)

    def _route(self, request: SimRequest, now: float) -> None:
        limit = self.config.max_ongoing_requests
        nodes = [n for n in self._running() if limit is None or n.replica.num_outstanding < limit]
        if not nodes or not self._tenant_has_room(request.tenant):
            self.pending.append(request)
            return
        if self.shaper is not None:  # the shaper sees every dispatch (VTC counts this one too)
            _, self.shape_state = self.shaper(ShapeContext(
                [Queued(request.tenant, request.num_prompt_tokens, request.num_output_tokens, now)], now,
                self.shape_state))
        ctx = RouteContext([n.replica.num_outstanding for n in nodes],
                           [n.replica.kv_utilization for n in nodes], request.num_prompt_tokens,
                           self.route_state, self.rng, request.block_hashes, request.session_key, now,
                           tuple(n.replica.replica_id for n in nodes),
                           _PendingPrefill(nodes),
                           self.config.replica.block_size,
                           [len(n.replica.waiting) for n in nodes])
        index, self.route_state = self.router(ctx)
        if not 0 <= index < len(nodes):
            raise ValueError(f"router {getattr(self.router, '__name__', self.router)} returned index {index} "
                             f"for {len(nodes)} replicas")
        self._assign(nodes[index], request)

    def _flush_pending(self, now: float) -> None:
        for _ in range(len(self.pending)):
            self._route(self.pending.popleft(), now)

    def _requeue(self, requests: Sequence[SimRequest], now: float) -> None:
        self.num_requeued += len(requests)
        for request in requests:
            self.num_in_flight_by_tenant[request.tenant] -= 1
            self._route(request, now)

    # ------------------------------------------------------------------ scaling
    def _reconcile(self, now: float) -> None:
        active = [n for n in self.nodes if n.state in (STARTING, RUNNING) and not n.is_interrupted]
        surplus = len(active) - self.target
        if surplus < 0:
            num_spot = sum(n.pool == Pool.SPOT for n in active)
            spot_target = self._spot_target(now, num_spot, len(active) - num_spot)
            for _ in range(-surplus):
                want_spot = num_spot < spot_target
                self._launch(now, Pool.SPOT if want_spot else Pool.ON_DEMAND)
                num_spot += want_spot
        starting = sorted((n for n in active if n.state == STARTING), key=lambda n: -n.launch_s)
        for node in starting[:max(surplus, 0)]:
            node.stop(now)
        surplus -= min(len(starting), max(surplus, 0))
        running = sorted((n for n in active if n.state == RUNNING), key=lambda n: n.replica.num_outstanding)
        for node in running[:max(surplus, 0)]:
            node.state, node.last_finish_s = DRAINING, now
            self._requeue(list(node.replica.waiting), now)
            node.replica.waiting.clear()

    def _spot_target(self, now: float, num_spot: int, num_on_demand: int) -> int:
        if self.spot_policy is None:
            return round(self.config.spot_fraction * self.target)
        self.notice_times = [t for t in self.notice_times if now - t <= 3600.0]
        cfg = self.config
        ctx = SpotContext(self.target, num_spot, num_on_demand,
                          cfg.spot_usd_per_gpu_hour / cfg.on_demand_usd_per_gpu_hour
                          if cfg.on_demand_usd_per_gpu_hour > 0 else 1.0,
                          now, tuple(self.notice_times), cfg.spot_notice_s, cfg.cold_start_s, self.spot_state)
        spot_target, self.spot_state = self.spot_policy(ctx)
        return int(spot_target)

    def _tick(self, now: float) -> None:
        for node in self.nodes:
            if node.state == DRAINING:
                node.replica.advance(now)
                if node.replica.num_outstanding == 0 and not node.is_interrupted:
                    node.stop(node.last_finish_s)
        self._advance_running(now)
        running = self._running()
        cfg = self.config.autoscaling
        ctx = AutoscalingContext(
            current_num_replicas=len(running), target_num_replicas=self.target,
            total_num_requests=len(self.pending) + sum(n.replica.num_outstanding for n in running),
            total_queued_requests=len(self.pending),
            capacity_adjusted_min_replicas=cfg.min_replicas, capacity_adjusted_max_replicas=cfg.max_replicas,
            current_time=now, policy_state=self.policy_state, config=cfg,
            aggregated_metrics={
                "kv_utilization": {n.replica.replica_id: n.replica.kv_utilization for n in running},
                "compute_utilization": {n.replica.replica_id: n.compute_utilization(now) for n in running},
                "num_waiting_requests": {n.replica.replica_id: n.replica.num_waiting_for_first_token
                                         for n in running}},
            running_replicas=[n.replica.replica_id for n in running],
            last_scale_up_time=self.last_up, last_scale_down_time=self.last_down,
            num_starting_replicas=sum(n.state == STARTING for n in self.nodes),
            cold_start_s=self.config.cold_start_s)
        desired, self.policy_state = self.autoscaler(ctx)
        desired = int(min(cfg.max_replicas, max(cfg.min_replicas, desired)))
        if desired != self.target:
            self.num_scale_actions += 1
            if desired > self.target:
                self.last_up = now
            else:
                self.last_down = now
            self.target = desired
            self._reconcile(now)
        row: dict[str, float] = {"time_s": now, "target": self.target}
        for pool in POOLS:
            for state in (STARTING, RUNNING, DRAINING):
                row[f"num_{state}_{pool}"] = sum(n.pool == pool and n.state == state for n in self.nodes)
        self.timeline.append(row)

    # ------------------------------------------------------------------ events
    def _handle(self, now: float, kind: EventKind, node: Node) -> None:
        if kind == EventKind.READY and node.state == STARTING and not node.is_interrupted:
            node.state = RUNNING
            node.replica.now_s = node.sample_s = now
            self._flush_pending(now)
        elif kind == EventKind.NOTICE and node.state in (STARTING, RUNNING, DRAINING) and not node.is_interrupted:
            node.is_interrupted = True
            self.num_spot_interruptions += 1
            self.notice_times.append(now)
            if node.state == STARTING:
                node.stop(now)
            else:
                node.state = DRAINING
                self._requeue(list(node.replica.waiting), now)
                node.replica.waiting.clear()
                self._push(now + self.config.spot_notice_s, EventKind.INTERRUPT, node)
            self._reconcile(now)
        elif kind == EventKind.INTERRUPT and node.state == DRAINING:
            node.replica.advance(now)
            node.stop(now)
            self._requeue(node.replica.evict_all(), now)

    def run(self, trace: Sequence[TraceRequest]) -> SimResult:
        cfg = self.config.autoscaling
        self.target = cfg.initial_replicas if cfg.initial_replicas is not None else cfg.min_replicas
        self._reconcile(-self.config.cold_start_s)  # the initial fleet is warm at t=0
        horizon = (trace[-1].arrival_time_s if trace else 0.0) + MAX_DRAIN_S
        requests = [SimRequest(i, r.arrival_time_s, r.num_prompt_tokens, r.num_output_tokens,
                               getattr(r, "block_hashes", ()), getattr(r, "session_key", None),
                               getattr(r, "tenant", "default")) for i, r in enumerate(trace)]
        self._push(0.0, EventKind.TICK)
        index, num = 0, len(requests)
        while True:
            next_event = self.events[0][0] if self.events else math.inf
            if index < num and requests[index].arrival_time_s <= next_event:
                request = requests[index]
                index += 1
                self._advance_running(request.arrival_time_s)
                self._route(request, request.arrival_time_s)
                continue
            now, _, kind, payload = heapq.heappop(self.events)
            if now > horizon:
                raise RuntimeError(f"requests still unfinished {MAX_DRAIN_S:.0f} s after the last arrival "
                                   f"({num - len(self.done)} left, {len(self._running())} replicas running)")
            if kind == EventKind.TICK:
                self._tick(now)
                if index == num and len(self.done) == num:
                    break
                self._push(now + self.config.control_period_s, EventKind.TICK)
            else:
                self._handle(now, kind, payload)
        return self._result(trace)

    def _result(self, trace: Sequence[TraceRequest]) -> SimResult:
        records = [RequestRecord(r.arrival_time_s, r.first_token_time_s, t, r.num_prompt_tokens, r.num_output_tokens)
                   for r, t in sorted(self.done, key=lambda d: d[0].index)]
        end = max([t for _, t in self.done] + [trace[-1].arrival_time_s if trace else 0.0])
        gpu_hours, cost = bill_nodes(self.nodes, end, self.config)
        num_blocks = sum(n.replica.num_prompt_blocks for n in self.nodes)
        hit_rate = sum(n.replica.num_hit_blocks for n in self.nodes) / num_blocks if num_blocks else math.nan
        return SimResult(records, self.timeline, gpu_hours, cost, self.num_scale_actions, self.num_spot_interruptions,
                         self.num_requeued, end, hit_rate, [self.routed_to.get(i, -1) for i in range(len(trace))])


def simulate(trace: Sequence[TraceRequest], step_model: StepTimeModel, config: ClusterConfig | None = None,
             autoscaler: Policy | None = None, router: Router = least_outstanding,
             spot_policy: SpotPolicy | None = None, shaper: Shaper | None = None) -> SimResult:
    """Run `trace` through a simulated fleet; see the module docstring.

    Args:
        trace: requests sorted by arrival time (s).
        step_model: step-time model of one replica (`inferlab.sim.steptime`).
        config: fleet settings (default `ClusterConfig()`).
        autoscaler: `policy(ctx) -> (num_replicas, state)`; default: stay at the initial count.
        router: `router(ctx) -> (index, state)`; default least-outstanding.
        spot_policy: `spot_policy(ctx) -> (num_spot_replicas, state)`, asked at each launch
            (`inferlab.policies.spot`); default: `config.spot_fraction` of the fleet.
        shaper: `shaper(ctx) -> (position, state)` picks which request waiting at the cluster goes
            next (`inferlab.policies.shape`; needs `max_ongoing_requests`); default: FCFS.
    Returns:
        `SimResult` with one `RequestRecord` per trace request, in trace order.
    """
    config = config or ClusterConfig()
    for prev, cur in zip(trace, trace[1:]):
        if cur.arrival_time_s < prev.arrival_time_s:
            raise ValueError(f"trace must be sorted by arrival_time_s; {cur.arrival_time_s} follows "
                             f"{prev.arrival_time_s}")
    if autoscaler is None:
        def autoscaler(ctx: Any) -> tuple[int, dict[str, Any]]:
            return ctx.target_num_replicas, ctx.policy_state
    return Cluster(step_model, config, autoscaler, router, spot_policy, shaper).run(trace)
