"""Chaos experiments against a live local stack, bounded in time and on loopback only.

Layout: faults.py (a fault-injection TCP proxy; SIGSTOP/SIGCONT), load.py (steady client load
that records every request's outcome), stack.py (replicas behind proxies, a managed Prometheus,
the load), toolkit.py (Chaos Toolkit actions and probes over the stack; `inferlab chaos run`),
experiments/ (the shipped experiments, Chaos Toolkit YAML).
"""
