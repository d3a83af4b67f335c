"""What one trial runs: zoneout layers, tasks and their real data, the model, the training loop.

``trials`` imports neither ``study`` nor ``dashboards``: a Ray worker needs only this package.
"""

from trials.config import TrialConfig, load_config

__all__ = ["TrialConfig", "load_config"]
