"""Nodes on one machine: network namespaces joined by a private bridge (`inferlab cluster`)."""

from inferlab.cluster.netns import ClusterConfig, ClusterError, Node, cluster_down, cluster_up, node_exec_argv, status

__all__ = ["ClusterConfig", "ClusterError", "Node", "cluster_down", "cluster_up", "node_exec_argv", "status"]
