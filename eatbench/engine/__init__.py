"""Layer 2: the engine and the world it simulates.

The event loop (``loop``: ``Engine``, ``Decision``), the read-only view schedulers see
(``view``), the cluster and its model residency (``cluster``), latency profiles and
quality curves (``profiles``), task streams (``workload``), gang placement rules
(``placement``) and the interface every execution backend implements (``backend``).
It knows no concrete scheduler or backend; those (layer 3) register by name.
"""
