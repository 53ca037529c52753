"""Discrete-event, iteration-level simulator of an LLM serving fleet.

`steptime` (how long one engine step takes) -> `replica` (continuous batching on one
replica) -> `cluster` (the event loop: routing, autoscaling, cold starts, spot
capacity) over `fleet` (its settings, replica lifecycle, result and bill) ->
`oracle` (the 5-minute reference) and `main` (`inferlab simulate`); `queueing` holds
the closed-form formulas the simulator is checked against.
"""

from inferlab.sim.cluster import ClusterConfig, SimResult, simulate
from inferlab.sim.oracle import OraclePlan, oracle_plan
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import Roof, StepTimeModel, fit_linear, load_profile, roofline_model

__all__ = ["ClusterConfig", "OraclePlan", "ReplicaConfig", "Roof", "SimResult", "StepTimeModel", "fit_linear",
           "load_profile", "oracle_plan", "roofline_model", "simulate"]
