"""Ranking losses: small pure functions of the scores of positive and sampled negative items.

Every loss takes ``positive`` scores of shape (B,) and ``negative`` scores of shape (B, N) (N
negatives per positive; shared negatives are simply the same N columns for every row), optional
per-positive ``weights`` (B,) and an optional boolean ``negative_mask`` (B, N) that is False
where a sampled "negative" is in fact one of the user's positives (it is then left out), and
returns the weighted mean loss (a scalar).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _mean(per_positive: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_positive.mean()
    return torch.dot(per_positive, weights) / weights.sum()


def _mean_over_negatives(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over dim 1 of the valid negatives (0 where a row has none)."""
    if mask is None:
        return values.mean(dim=1)
    return (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def pointwise_loss(positive, negative, weights=None, negative_mask=None):
    """Logistic loss: positives labelled 1, sampled negatives 0 (Hu, Koren & Volinsky 2008 treat
    unobserved pairs as negatives; the logistic form is that of Johnson 2014, "Logistic matrix
    factorization for implicit feedback data")."""
    per_positive = F.softplus(-positive) + _mean_over_negatives(F.softplus(negative), negative_mask)
    return _mean(per_positive, weights)


def bpr_loss(positive, negative, weights=None, negative_mask=None):
    """Bayesian personalised ranking: ``-log sigmoid(pos - neg)``, averaged over negatives
    (Rendle et al. 2009, "BPR: Bayesian personalized ranking from implicit feedback")."""
    per_positive = _mean_over_negatives(F.softplus(negative - positive[:, None]), negative_mask)
    return _mean(per_positive, weights)


def hinge_loss(positive, negative, weights=None, negative_mask=None):
    """Pairwise hinge ``max(0, 1 - pos + neg)``, averaged over negatives (the margin ranking
    loss of Weston, Bengio & Usunier 2011, "WSABIE", without rank weighting)."""
    margins = torch.clamp(1.0 - positive[:, None] + negative, min=0.0)
    per_positive = _mean_over_negatives(margins, negative_mask)
    return _mean(per_positive, weights)


def adaptive_hinge_loss(positive, negative, weights=None, negative_mask=None):
    """Hinge against the highest-scoring of the N negatives: an approximation of WARP's search
    for a violating negative (Weston, Bengio & Usunier 2011, "WSABIE: scaling up to large
    vocabulary image annotation")."""
    if negative_mask is not None:
        negative = negative.masked_fill(~negative_mask, float("-inf"))
    hardest = negative.max(dim=1).values
    per_positive = torch.clamp(1.0 - positive + hardest, min=0.0)
    return _mean(per_positive, weights)


def sampled_softmax_loss(
    positive,
    negative,
    weights=None,
    positive_logq=None,
    negative_logq=None,
    negative_mask=None,
):
    """Cross-entropy of the positive against sampled negatives, with the logQ correction.

    Each logit is the score minus the log of its sampling probability, which makes the sampled
    softmax an unbiased-in-the-limit estimate of the full softmax over all items (Bengio &
    Senecal 2008, "Adaptive importance sampling to accelerate training of a neural
    probabilistic language model"; Yi et al. 2019, "Sampling-bias-corrected neural modeling for
    large corpus item recommendations").

    Parameters
    ----------
    positive_logq : Tensor (B,), optional
        log sampling probability of each positive item; ``None`` for uniform sampling (the
        correction is then a constant that cancels).
    negative_logq : Tensor (N,) or (B, N), optional
    negative_mask : bool Tensor (B, N), optional
        False where a negative is the row's own positive item (an "accidental hit"); those
        logits are removed.
    """
    if negative_logq is not None:
        negative = negative - negative_logq
        positive = positive - positive_logq
    if negative_mask is not None:  # one kernel, where masked_fill(~mask) takes two
        negative = torch.where(negative_mask, negative, float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1)
    # -log softmax of the positive column (= logsumexp(logits) - positive): one fused kernel
    # each way where logsumexp takes several; the sign is applied to the mean, a scalar.
    log_likelihood = F.log_softmax(logits, dim=1)[:, 0]
    return -_mean(log_likelihood, weights)


LOSS_FUNCTIONS = {
    "softmax": sampled_softmax_loss,
    "bpr": bpr_loss,
    "hinge": hinge_loss,
    "adaptive_hinge": adaptive_hinge_loss,
    "pointwise": pointwise_loss,
}
# Losses whose negatives are one set shared by the whole batch (scored with one matrix product).
SHARED_NEGATIVES = {"softmax"}
