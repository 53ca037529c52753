"""inferlab: the package behind the "Distributed Inference & Scaling" labs (MOD-526).

Floors (a module imports only from floors below it), see README:
1 model/, costmodel/, policies/, metrics, traces, hardware
2 engine/, parallel/, sim/, doctor, notebook
3 serving/, bench/, deploy/, profile
4 cli
Heavy subpackages are imported by path (`from inferlab.engine import ...`).
"""

__version__ = "0.1.0"
