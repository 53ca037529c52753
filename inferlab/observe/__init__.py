"""Observability and incident drills: metrics exposition under vLLM's names, OpenTelemetry spans,
a managed Prometheus with SLO recording and burn-rate alert rules, and chaos experiments.

Layout: exposition.py (the engine's Prometheus metrics), tracing.py (request spans),
prometheus.py (start Prometheus on loopback, query it; promtool), rules/ (recording and alert
rules, their promtool unit tests), chaos.py (declarative fault-injection experiments).
"""
