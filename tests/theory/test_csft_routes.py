"""CSFT in its two homes agree: the float64 numpy route (theory.csft) and the torch loss (theory.losses.csft_loss)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from theory.csft import csft_beta_schedule, csft_token_objective, csft_token_weight
from theory.losses import csft_betas, csft_loss


def _batch(seed=0, B=4, T=9):
    rng = np.random.default_rng(seed)
    logp = -rng.exponential(1.5, size=(B, T))
    ref = -rng.exponential(1.5, size=(B, T))
    lengths = rng.integers(1, T + 1, size=B)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(float)
    return logp, ref, mask


@pytest.mark.parametrize("seed", range(5))
def test_betas_value_and_gradient_agree_between_numpy_and_torch(seed):
    logp, ref, mask = _batch(seed)
    betas_np = np.stack([csft_beta_schedule(logp.shape[1]) for _ in range(logp.shape[0])]) * mask
    lp = torch.tensor(logp, requires_grad=True)
    betas_t = csft_betas(torch.tensor(mask))
    assert betas_t.numpy() == pytest.approx(betas_np, abs=0)
    loss, _ = csft_loss(lp, torch.tensor(ref), torch.tensor(mask), form="sigmoid", aggregation="token_mean")
    loss.backward()
    b = np.where(mask > 0, betas_np, 1.0)  # the numpy route needs β > 0 everywhere; masked tokens drop out
    obj = csft_token_objective(logp - ref, b)
    assert float(loss.detach()) == pytest.approx(float((obj * mask).sum() / mask.sum()), rel=1e-12)
    # d loss / d logp_t = −w_t / Σ mask on response tokens (the detached-weight form's gradient)
    want = -csft_token_weight(logp - ref, b) * mask / mask.sum()
    assert lp.grad.numpy() == pytest.approx(want, abs=1e-12)


def test_weighted_nll_form_has_the_same_gradient_and_its_own_value():
    logp, ref, mask = _batch(7)
    grads, values = [], []
    for form in ("sigmoid", "weighted_nll"):
        lp = torch.tensor(logp, requires_grad=True)
        loss, _ = csft_loss(lp, torch.tensor(ref), torch.tensor(mask), form=form, aggregation="token_mean")
        loss.backward()
        grads.append(lp.grad.numpy())
        values.append(float(loss))
    assert grads[0] == pytest.approx(grads[1], abs=1e-12)
    b = np.where(mask > 0, np.stack([csft_beta_schedule(logp.shape[1])] * logp.shape[0]), 1.0)
    nll = (-csft_token_weight(logp - ref, b) * logp * mask).sum() / mask.sum()
    assert values[1] == pytest.approx(float(nll), rel=1e-12) and values[0] != pytest.approx(values[1])
