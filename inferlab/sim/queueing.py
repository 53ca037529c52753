"""Queueing formulas to check the simulator against and to size fleets on the back of an envelope.

Floor 2 of inferlab, next to `sim/cluster.py` (whose M/M/c-like runs must agree with
these) and used by the lab notebook.

- Erlang C: probability an arrival waits in M/M/c, and the mean wait
  W_q = C(c, a) / (c * mu - lambda), with offered load a = lambda / mu.
- Kingman (G/G/1): W_q ~= rho / (1 - rho) * (ca^2 + cs^2) / 2 * E[S].
- Allen-Cunneen (G/G/c): W_q ~= W_q(M/M/c) * (ca^2 + cs^2) / 2.
Rates are per second, times in seconds; ca^2 and cs^2 are squared coefficients of
variation of inter-arrival and service times.
"""

from __future__ import annotations

import math


def _check(arrival_rate_rps: float, service_rate_rps: float, num_servers: int) -> float:
    if not arrival_rate_rps > 0 or not service_rate_rps > 0:
        raise ValueError(f"rates must be > 0, got arrival {arrival_rate_rps}, service {service_rate_rps}")
    if num_servers < 1:
        raise ValueError(f"num_servers must be >= 1, got {num_servers}")
    rho = arrival_rate_rps / (num_servers * service_rate_rps)
    if rho >= 1:
        raise ValueError(f"unstable: utilisation rho = {rho:.3f} >= 1")
    return rho


def erlang_c(num_servers: int, offered_load: float) -> float:
    """Probability of waiting in M/M/c with c servers and offered load a = lambda/mu (< c)."""
    if num_servers < 1 or not 0 <= offered_load < num_servers:
        raise ValueError(f"need num_servers >= 1 and 0 <= offered_load < num_servers, got {num_servers}, "
                         f"{offered_load}")
    # Erlang B by its stable recursion, then C = B / (1 - rho (1 - B))
    b = 1.0
    for k in range(1, num_servers + 1):
        b = offered_load * b / (k + offered_load * b)
    rho = offered_load / num_servers
    return b / (1 - rho * (1 - b))


def mmc_wait_s(arrival_rate_rps: float, service_rate_rps: float, num_servers: int) -> float:
    """Mean time in queue (before service) of M/M/c."""
    _check(arrival_rate_rps, service_rate_rps, num_servers)
    a = arrival_rate_rps / service_rate_rps
    return erlang_c(num_servers, a) / (num_servers * service_rate_rps - arrival_rate_rps)


def kingman_wait_s(arrival_rate_rps: float, mean_service_s: float, ca2: float = 1.0, cs2: float = 1.0) -> float:
    """Kingman's G/G/1 approximation of the mean time in queue."""
    rho = _check(arrival_rate_rps, 1.0 / mean_service_s, 1)
    return rho / (1 - rho) * (ca2 + cs2) / 2 * mean_service_s


def allen_cunneen_wait_s(arrival_rate_rps: float, service_rate_rps: float, num_servers: int,
                         ca2: float = 1.0, cs2: float = 1.0) -> float:
    """Allen-Cunneen G/G/c approximation: the M/M/c wait scaled by (ca^2 + cs^2) / 2."""
    return mmc_wait_s(arrival_rate_rps, service_rate_rps, num_servers) * (ca2 + cs2) / 2


def min_servers_for_wait(arrival_rate_rps: float, service_rate_rps: float, max_wait_s: float,
                         max_servers: int = 10_000) -> int:
    """Fewest M/M/c servers whose mean queueing wait is <= max_wait_s."""
    c = max(1, math.floor(arrival_rate_rps / service_rate_rps) + 1)
    while c <= max_servers:
        if mmc_wait_s(arrival_rate_rps, service_rate_rps, c) <= max_wait_s:
            return c
        c += 1
    raise ValueError(f"no fleet of <= {max_servers} servers reaches a mean wait of {max_wait_s} s")


def supermarket_sojourn_s(load: float, num_choices: int, num_terms: int = 200) -> float:
    """Mean time in system of the supermarket model (Mitzenmacher 2001; Vvedenskaya et al. 1996).

    n -> infinity FIFO servers with exponential service of mean 1, Poisson arrivals of rate
    `load` per server, each joining the shortest of `num_choices` servers drawn at random:
    T = sum_{i>=1} load^((d^i - d) / (d - 1)); d = 1 (random routing) is M/M/1: 1 / (1 - load).
    At load 0.9: d=1 gives 10, d=2 gives 2.61.
    """
    if not 0 < load < 1 or num_choices < 1:
        raise ValueError(f"need 0 < load < 1 and num_choices >= 1, got {load}, {num_choices}")
    if num_choices == 1:
        return 1.0 / (1.0 - load)
    d, total = num_choices, 0.0
    for i in range(1, num_terms + 1):
        exponent = (d ** i - d) / (d - 1)
        if exponent > 1e6:
            break
        total += load ** exponent
    return total
