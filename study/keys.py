"""The names of the attributes this service writes into Optuna studies and trials.

Every module that writes or reads one of them imports it from here, so a rename is one edit and
a reader can never look for a key the writer does not use.
"""

from __future__ import annotations

__all__ = [
    "CHECKPOINTS",
    "DRIVER",
    "EPOCHS",
    "FAIL_REASON",
    "GRACE_PERIOD",
    "HEARTBEAT_PREFIX",
    "LAYER_PATHS",
    "MAX_EPOCHS",
    "METRIC",
    "NODES",
    "PROMOTED_FROM",
    "PRUNED_AT",
    "RAY_TRIAL_IDS",
    "REDUCTION_FACTOR",
    "REQUEUED",
    "REQUEUED_FROM",
    "RESUMED_FROM",
    "RESUME_POINTS",
    "RESUME_SKIPPED",
    "RETIRED_BECAUSE",
    "RUN_ENDS",
    "SCORE_DEFINITION",
    "SEEDS",
    "SEED_VALUES",
    "SOURCE_TRIAL",
    "SPEC_CHANGES",
    "SPEC_IDENTITY",
    "SURPLUS",
]

# --- study user attributes (read by the report and export) ---------------------------------
METRIC = "metric"  # the validation metric's name: bpc, perplexity, error_rate
MAX_EPOCHS = "max_epochs"  # the full epoch budget of a trial
GRACE_PERIOD = "grace_period"  # ASHA's, when the study uses ASHA
REDUCTION_FACTOR = "reduction_factor"
# What the study IS (base, search space, fixed points, metric, direction, sampler kind, repeats),
# as the first run stored it; a rerun with a different one is refused (study.identity).
SPEC_IDENTITY = "spec_identity"
# The run settings as last accepted, and every accepted change to them ({at, changes}).
SPEC_CHANGES = "spec_changes"
# Which definition the trials' values follow (study.score); absent on studies written before it
# (``zoneout-study db rescore`` brings them to it).
SCORE_DEFINITION = "score_definition"
# A promoted study (study.ladder): the study it promoted from, the top K, the named points and
# the configurations the promotion resolved to, with their source trials.
PROMOTED_FROM = "promoted_from"

# --- study system attributes -----------------------------------------------------------------
HEARTBEAT_PREFIX = "driver_heartbeat:"  # + driver id -> POSIX time of its last beat

# --- trial user attributes -------------------------------------------------------------------
DRIVER = "driver"  # host:pid:start of the driver that asked the trial
SEEDS = "seeds"  # one seed per repeat of the configuration
# Written by versions before 2026-12-05 only (the store's zs_trials / zs_runs keep them now):
RAY_TRIAL_IDS = "ray_trial_ids"
EPOCHS = "epochs"  # last epoch reached, per seed; frame-contract: not a column (an Optuna key)
NODES = "nodes"
CHECKPOINTS = "checkpoints"  # last checkpoint location, per seed
SEED_VALUES = "seed_values"  # each seed's score: its best validation value (study.score)
# Written by versions before 2026-12-05 only: why each seed's run ended (a study.score.RunEnd
# value), and the recurrent layer's path per seed ({path, fallback}); zs_runs keeps both now.
RUN_ENDS = "run_ends"
LAYER_PATHS = "layer_paths"
SOURCE_TRIAL = "source_trial"  # a promoted configuration's trial number in the source study
PRUNED_AT = "pruned_at"  # the rung epoch at which the scheduler stopped the configuration
FAIL_REASON = "fail_reason"
# Retired by the service (interrupted / driver lost / infrastructure, RETIRED_BECAUSE says
# which); does not count. The store keeps the same fact as zs_trials.end_reason / retired.
REQUEUED = "requeued"
SURPLUS = "surplus"  # asked beyond n_trials, or a point another trial holds; does not count
# Why the service retired a trial to continue it: a study.plan.Retired value (interrupted,
# driver_lost, infrastructure). The FAIL row is a fact about the run, not about the config.
RETIRED_BECAUSE = "retired_because"
REQUEUED_FROM = "requeued_from"  # on a replacement: the number of the trial it replaces
# Per seed: where the trial can continue from ({seed, epoch, checkpoint, curve} or null).
# Written after every checkpoint, so it survives a driver killed without warning.
RESUME_POINTS = "resume_points"
RESUMED_FROM = "resumed_from"  # {trial, epochs}: what a replacement continued from, per seed
RESUME_SKIPPED = "resume_skipped"  # per seed: why it started fresh instead (or null)
