"""What the cluster tests share: whether network namespaces can be made here, probed once."""

import pytest

from inferlab.cluster.netns import ClusterError, preflight

try:
    preflight()
    REASON = None
except ClusterError as err:  # not root, no iproute2, or a kernel without namespaces
    REASON = str(err)

NEEDS_NAMESPACES = pytest.mark.skipif(REASON is not None, reason=f"no network namespaces here: {REASON}")
