"""Reports from result files: tables (pandas), markdown, PNG figures and W&B runs.

Modules are imported on demand (pandas, matplotlib and wandb are heavy):
``aggregate`` (result files -> DataFrames), ``markdown`` (REPORT.md), ``plots`` (PNGs),
``wandb_log`` / ``wandb_read`` (W&B offline runs and their read-back), ``cli``
(``eatbench report`` and ``eatbench sweep``).
"""
