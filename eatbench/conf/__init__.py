"""eatbench's Hydra configs, shipped as package data and found as ``pkg://eatbench.conf``
(this file makes the folder an importable module, as Hydra's package search path needs)."""
