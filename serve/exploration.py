"""Exploration (Amazon Personalize's ``explorationWeight`` and ``explorationItemAgeCutOff``):
new or rarely seen items mixed into ``user`` and ``history`` answers, so that items with little
interaction data get shown and can gather some.

The rule, for one request whose weight ``w`` (0 to 1) is above 0 and whose answer may hold
``top_n`` items:

1. **Cold items** (the candidates): items with at most the catalogue's median number of
   training interactions (``item_popularity``, "rarely seen") and, when the model knows item
   ages, at most ``explorationItemAgeCutOff`` days old. An item's age is counted back from the
   newest training interaction of the catalogue, to its creation time (item metadata
   ``CREATION_TIMESTAMP``, Unix seconds, as Personalize's Items dataset) or else to its first
   interaction in training (the artifact's ``seen_timestamps``); without either, age does not
   narrow the candidates. Items the request filters out or already lists are never candidates
   (nor, when they are excluded, the user's training items).
2. **Slots**: ``s = round(w * top_n)`` items of the answer (at most the candidates' number) are
   explored items; the answer's first ``top_n - s`` items stay, in order.
3. **Which cold items**: ``s`` drawn without replacement with probability proportional to
   ``exp(z_i - log(1 + n_i))`` (the Gumbel-top-k draw), where ``z`` is the request's model score
   standardised over the candidates and ``n_i`` the item's training interactions: relevant items
   first, the least seen favoured.
4. **Where**: the explored items take ``s`` positions drawn uniformly among the answer's; they
   carry their own model scores, so an explored answer is not sorted by score.

The draws use ``numpy.random.default_rng(seed)``: the request's ``exploration_seed``
(``explorationSeed``) makes an answer reproducible; without one each answer draws afresh.
Deployment defaults: ``MFREC_EXPLORATION_WEIGHT`` (0: off) and
``MFREC_EXPLORATION_ITEM_AGE_CUTOFF`` (30 days, Personalize's default); a request overrides
them with ``exploration_weight`` / ``exploration_item_age_cutoff`` (Personalize's names too).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from mfrec.train.artifact import ATTRIBUTE_PREFIX
from mfrec.train.errors import ConfigError
from mfrec.train.item_features import SECONDS_PER_DAY, SEEN_TIMESTAMPS

if TYPE_CHECKING:
    from mfrec.serve.jobs import Handler, Job
    from mfrec.serve.requests import Recommendation

CREATION_TIMESTAMP = "CREATION_TIMESTAMP"  # Personalize's Items dataset column
#: Request fields (mfrec's spelling) -> :class:`Exploration` attributes.
FIELDS = {
    "exploration_weight": "weight",
    "exploration_item_age_cutoff": "age_cutoff_days",
    "exploration_seed": "seed",
}
#: Amazon Personalize's spellings of :data:`FIELDS` (the seed is an mfrec extension).
PERSONALIZE_FIELDS = {
    "explorationWeight": "exploration_weight",
    "explorationItemAgeCutOff": "exploration_item_age_cutoff",
    "explorationSeed": "exploration_seed",
}


@dataclass(frozen=True)
class Exploration:
    """How much to explore: a deployment's defaults, or a request's overrides (None: default).

    Attributes
    ----------
    weight : float in [0, 1]
        Share of an answer's slots given to cold items (0: none).
    age_cutoff_days : float > 0
        Oldest item age (days) still explored, when item ages are known.
    seed : int or None
        Seed of the draws (None: fresh randomness).
    """

    weight: float | None = None
    age_cutoff_days: float | None = None
    seed: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Exploration:
        env = os.environ if environ is None else environ
        weight = env.get("MFREC_EXPLORATION_WEIGHT", "").strip() or "0"
        cutoff = env.get("MFREC_EXPLORATION_ITEM_AGE_CUTOFF", "").strip() or "30"
        try:
            return cls(parse_weight(weight, "MFREC_EXPLORATION_WEIGHT"),
                       parse_cutoff(cutoff, "MFREC_EXPLORATION_ITEM_AGE_CUTOFF"))  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def over(self, default: Exploration) -> Exploration:
        """These settings, with ``default``'s where these are None."""
        return Exploration(
            default.weight if self.weight is None else self.weight,
            default.age_cutoff_days if self.age_cutoff_days is None else self.age_cutoff_days,
            self.seed,
        )


def _number(value, name: str) -> float:
    if isinstance(value, str) and len(value) <= 30:
        try:
            value = float(value.strip())
        except ValueError:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{name} must be a number, got {str(value)[:40]!r}")


def parse_weight(value, name: str) -> float:
    """A weight between 0 and 1 (ValueError otherwise)."""
    weight = _number(value, name)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{name}={weight:g} is out of range; use 0 (no exploration) to 1")
    return weight


def parse_cutoff(value, name: str) -> float:
    """An item age in days above 0 (ValueError otherwise)."""
    days = _number(value, name)
    if not 0.0 < days <= 1e6:
        raise ValueError(f"{name}={days:g} is out of range; use a number of days above 0")
    return days


def parse_seed(value, name: str) -> int:
    """A seed from 0 to 2**63 - 1 (ValueError otherwise)."""
    seed = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdigit() and len(value) <= 20:
        seed = int(value)
    if seed is None or not 0 <= seed < 2**63:
        raise ValueError(f"{name} must be an integer from 0 to 2**63 - 1, got {str(value)[:40]!r}")
    return seed


PARSERS = {
    "exploration_weight": parse_weight,
    "exploration_item_age_cutoff": parse_cutoff,
    "exploration_seed": parse_seed,
}


def _seconds(text: str) -> float:
    """A creation time in Unix seconds; +inf when empty or not a number."""
    try:
        value = float(text)
    except ValueError:
        return np.inf
    return value if math.isfinite(value) else np.inf


def item_ages_days(artifact) -> np.ndarray | None:
    """Each item's age in days (see the module docstring), or None when the model cannot tell;
    an item with no known time has age +inf (never explored under a cut-off)."""
    names = [
        k for k in artifact.extra if k.upper() == (ATTRIBUTE_PREFIX + CREATION_TIMESTAMP).upper()
    ]
    created = artifact.extra[names[0]] if names else None
    if created is not None:
        born = np.array([_seconds(v) for v in created.tolist()])
    elif SEEN_TIMESTAMPS in artifact.extra:
        times = np.asarray(artifact.extra[SEEN_TIMESTAMPS], dtype=np.float64)
        born = np.full(artifact.num_items, np.inf)
        np.minimum.at(born, np.asarray(artifact.seen_indices), times)
        if not len(times):
            return None
    else:
        return None
    now = np.max(born[np.isfinite(born)], initial=-np.inf)
    if not np.isfinite(now):
        return None
    if SEEN_TIMESTAMPS in artifact.extra and len(artifact.extra[SEEN_TIMESTAMPS]):
        now = max(now, float(np.max(artifact.extra[SEEN_TIMESTAMPS])))
    return (now - born) / SECONDS_PER_DAY


class Explorer:
    """Mixes cold items into answers (the module docstring's rule) for one model."""

    def __init__(self, artifact, default: Exploration | None = None) -> None:
        self.default = default if default is not None else Exploration.from_env()
        self.artifact = artifact
        self._cold: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._pools: dict[float, np.ndarray] = {}

    def settings(self, job: Job) -> Exploration:
        own = job.request.exploration
        return own.over(self.default) if own is not None else self.default

    def pool(self, age_cutoff_days: float) -> np.ndarray:
        """The cold items' indices under this cut-off (cached per cut-off)."""
        if age_cutoff_days not in self._pools:
            if self._cold is None:  # on first use: the counts' median and the item ages
                counts = np.asarray(self.artifact.item_popularity, dtype=np.float64)
                rarely = counts <= np.median(counts)
                self._cold = counts, rarely, item_ages_days(self.artifact)
            _, cold, ages = self._cold
            if ages is not None:
                cold = cold & (ages <= age_cutoff_days)
            self._pools = {**self._pools, age_cutoff_days: np.flatnonzero(cold)}
        return self._pools[age_cutoff_days]

    def mix(self, handler: Handler, jobs, answers, queries: torch.Tensor, offsets=None):
        """``answers`` with explored items mixed into those of jobs with a weight above 0."""
        out = list(answers)
        for row, job in enumerate(jobs):
            settings = self.settings(job)
            if settings.weight and out[row].error is None and self.artifact.num_items:
                offset = 0.0 if offsets is None else float(offsets[row])
                out[row] = self._explored(handler, job, out[row], settings, queries[row], offset)
        return out

    def _explored(self, handler, job, answer, settings, query, offset) -> Recommendation:
        from mfrec.serve.catalog import SCORE_DECIMALS  # both import mfrec.serve.requests,
        from mfrec.serve.requests import Recommendation  # which imports this module

        rec = handler.rec
        slots = int(math.floor(settings.weight * job.top_n + 0.5))
        keep = answer.item_ids[: max(0, min(len(answer.item_ids), job.top_n - slots))]
        kept_idx = rec.catalog.indices(keep.tolist())[0]
        out = [job.banned, kept_idx]
        if job.user_idx >= 0 and handler.excludes_seen(job.request):
            out.append(rec.artifact.seen_items(job.user_idx))
        candidates = np.setdiff1d(self.pool(settings.age_cutoff_days), np.concatenate(out))
        if job.allowed is not None:
            candidates = np.intersect1d(candidates, job.allowed)
        slots = min(slots, len(candidates))
        if not slots:
            return answer
        tensors = rec.tensors
        index = torch.from_numpy(candidates).to(tensors.item_embeddings.device)
        scores = tensors.item_embeddings[index] @ query + tensors.item_biases[index] + offset
        scores = scores.double().cpu().numpy()
        rng = np.random.default_rng(settings.seed)
        z = (scores - scores.mean()) / (scores.std() or 1.0)
        keys = z - np.log1p(self._cold[0][candidates]) + rng.gumbel(size=len(candidates))
        chosen = np.argsort(-keys, kind="stable")[:slots]
        size = len(keep) + slots
        places = np.zeros(size, dtype=bool)
        places[rng.choice(size, slots, replace=False)] = True
        item_ids = np.empty(size, dtype=object)
        item_ids[places], item_ids[~places] = rec.catalog.item_ids[candidates[chosen]], keep
        values = np.empty(size)
        values[places] = np.round(scores[chosen], SCORE_DECIMALS) + 0.0
        values[~places] = answer.scores[: len(keep)]
        note = f"explored (new or rarely seen) items at positions {np.flatnonzero(places).tolist()}"
        note = note if answer.note is None else f"{answer.note}; {note}"
        return Recommendation(item_ids, values, note, basis=answer.basis)
