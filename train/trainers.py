"""One trainer per model, behind one interface: :func:`make_trainer` gives the trainer of a
resolved configuration (``model`` is ``sgd``, ``ials`` or ``sequence``).

Both trainers expose what :class:`~mfrec.train.phases.TrainingRun` drives: ``model`` (a
:class:`~mfrec.train.model.MatrixFactorization`), ``epoch`` and ``batch`` (completed epochs, and
completed steps of the current one), ``steps_per_epoch``, ``run_epoch(should_stop, on_batch)``
(the mean loss, or None when stopped mid-epoch) and ``state_dict``/``load_state_dict`` for exact
resumption. The sequence trainer's ``model`` is a
:class:`~mfrec.train.sequence_model.SequenceModel` (``score_users`` from each user's history);
it also has ``export_arrays``, the artifact's arrays of a set of weights.
"""

from __future__ import annotations

import torch

from mfrec.train.config import TrainConfig
from mfrec.train.errors import ConfigError
from mfrec.train.ials import IALSParams, IALSTrainer
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer
from mfrec.train.recency import training_weights
from mfrec.train.sequence_trainer import SequenceTrainer

# iALS's unobserved weight and regularisation when neither the user nor a probe chose them, and
# the start of the probes' search: IALSParams' defaults, the most robust pair of a grid at
# d = 128 over three data sets (mfrec.train.ials's docstring).
DEFAULT_UNOBSERVED_WEIGHT = IALSParams.alpha0
DEFAULT_REGULARIZATION = IALSParams.regularization


def ials_params(config: TrainConfig) -> IALSParams:
    """The :class:`IALSParams` of ``config`` ("auto" values at their defaults)."""
    return IALSParams(
        embedding_dim=config.embedding_dim,
        alpha0=config.unobserved_weight or DEFAULT_UNOBSERVED_WEIGHT,
        regularization=config.regularization or DEFAULT_REGULARIZATION,
        solver=config.ials_solver,
        cg_steps=config.cg_steps,
        seed=config.seed,
    )


def make_trainer(
    data: Interactions, config: TrainConfig, device: torch.device, horizon_epochs: int
) -> Trainer | IALSTrainer | SequenceTrainer:
    """The trainer of ``config.model`` on ``data``; ``horizon_epochs`` is the learning-rate
    schedule's length of the SGD and sequence models (iALS has no schedule).

    Raises
    ------
    ConfigError
        ``config.model`` is still ``auto`` (:mod:`mfrec.train.auto` resolves it first).
    """
    if config.model == "ials":
        confidences = training_weights(data, config.recency_min_weight)
        return IALSTrainer(data, ials_params(config), device, confidences)
    if config.model == "sgd":
        return Trainer(data, config, device, horizon_epochs=horizon_epochs)
    if config.model == "sequence":
        return SequenceTrainer(data, config, device, horizon_epochs=horizon_epochs)
    raise ConfigError(
        f"model={config.model!r} must be resolved to sgd, ials or sequence before training"
    )
