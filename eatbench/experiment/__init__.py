"""Layer 4: experiments. Composing Hydra configs (``compose``), running one seed of one
point (``runner``), sweeping points and seeds (``sweep``) and checking the simulator
against a real backend (``fidelity``). Built on the engine, schedulers and backends."""
