"""Layer 5 (beside ``report``): training the learned schedulers.

The gymnasium environment over the engine (``env``), SAC settings per architecture
(``presets``), stable-baselines3 policies (``policies``), the training-scenario space
(``scenarios``), resumable training (``train``) and multi-seed campaigns (``campaign``).
The schedulers that run trained policies live in ``eatbench.schedulers.rl``.
"""
