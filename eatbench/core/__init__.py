"""Layer 1 (bottom): configuration schemas and plain records.

Typed, validated configuration (``config``), tasks and their records (``tasks``), metrics
and statistics (``metrics``, ``stats``), the name registry (``registry``), the command
registry of the command line (``commands``) and run provenance (``provenance``). Nothing
here imports any other part of eatbench.
"""
