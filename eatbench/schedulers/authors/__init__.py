"""The EAT authors' released actors (github.com/zzf1955/EAT) as schedulers: ``authors_eat``,
``authors_dsac``, ``authors_sac``. Importing registers them; torch is imported only when a
checkpoint is loaded. The user supplies the checkpoint files (the release has no licence)."""

from eatbench.schedulers.authors.scheduler import AuthorsScheduler

__all__ = ["AuthorsScheduler"]
