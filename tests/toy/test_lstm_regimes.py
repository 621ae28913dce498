"""Tests of the LSTM toy's regimes study (toy/lstm_regimes.py) and the pieces it adds to toy.lstm.

References are independent of the code under test: the KL control and the PA-with-μ-gradient losses
against closed-form numpy values and gradients, early stopping against hand-made curves, the summary's
paired statistics against numpy/scipy recomputed from metrics.npz, and the small-data regime's
overfitting asserted seed by seed on the smoke run's curves.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from tests.tolerances import TOL
from toy import lstm
from toy.lstm import Args, StackedSeqModel, group_label, loss_for, stacked_group_loss
from toy.lstm_models import exact_kl, kl_control_loss
from toy.lstm_regimes import early_stopping_epoch, regime_groups


def _np_softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_kl(z, zr):
    lp, lq = _np_log_softmax(z), _np_log_softmax(zr)
    return (np.exp(lp) * (lp - lq)).sum(-1)


# ----------------------------------------------------------------------------------------------
# the KL control: value and gradient against numpy
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 30.0, 300.0])  # 30: probabilities ≈ 1e-40; 300: below 1e-300, to 0
def test_kl_control_loss_matches_numpy(scale):
    g = np.random.default_rng(1)
    z, zr = g.normal(size=(3, 5, 7)) * scale, g.normal(size=(3, 5, 7)) * scale
    mask = (g.random((3, 5)) > 0.3).astype(np.float64)
    mask[0, 0] = 1.0
    logits = torch.tensor(z, requires_grad=True)
    loss = kl_control_loss(logits, torch.tensor(zr), torch.tensor(mask))
    kl = _np_kl(z, zr)
    want = (kl * mask).sum() / mask.sum()
    assert float(loss.detach()) == pytest.approx(want, rel=TOL["float64"], abs=TOL["float64"])
    loss.backward()
    # ∂KL(p‖q)/∂z = p ⊙ (log p − log q − KL), weighted by the token-mean mask
    lp, lq = _np_log_softmax(z), _np_log_softmax(zr)
    grad = np.exp(lp) * (lp - lq - kl[..., None]) * (mask / mask.sum())[..., None]
    np.testing.assert_allclose(logits.grad.numpy(), grad, rtol=1e-9, atol=1e-12)
    assert np.isfinite(logits.grad.numpy()).all()


def test_exact_kl_is_zero_for_equal_distributions_and_hand_value():
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # p = (1/4, 3/4)
    zr = torch.zeros(1, 2, dtype=torch.float64)  # q = (1/2, 1/2)
    assert float(exact_kl(z, zr)[0]) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), rel=1e-14)
    assert float(exact_kl(z, z + 5.0)[0]) == pytest.approx(0.0, abs=1e-15)


def test_kl_control_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="mask"):
        kl_control_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="ref_logits"):
        kl_control_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.ones(2, 3))


# ----------------------------------------------------------------------------------------------
# the arms' losses through the stacked group loss, against closed-form numpy gradients
# ----------------------------------------------------------------------------------------------
def _hand(seed=0, S=2, B=3, T=6, V=5):
    g = np.random.default_rng(seed)
    return g.normal(size=(S, B, T, V)) * 2, g.normal(size=(S, B, T, V)) * 2, g.integers(V, size=(S, B, T))


def _np_arm_grad(group, z, zr, y, delta):
    """∂/∂z of Σ_s [CE_s + arm term], token means per model, in closed form."""
    S, B, T, V = z.shape
    n = B * T
    p = _np_softmax(z)
    lp, lq = _np_log_softmax(z), _np_log_softmax(zr)
    g_ce = -(np.eye(V)[y] - p) / n
    kl = (p * (lp - lq)).sum(-1)
    dkl = p * (lp - lq - kl[..., None])  # ∂KL/∂z
    if group.startswith("ce_kl"):
        return g_ce + float(group[5:]) * dkl / n
    a, th = zr.argmax(-1), z.argmax(-1)
    m = np.take_along_axis(lp, a[..., None], -1)[..., 0] - np.take_along_axis(lp, th[..., None], -1)[..., 0]
    sig = 1 / (1 + np.exp(kl * m))  # σ(−μ m)
    dmargin = np.eye(V)[a] - np.eye(V)[th]
    # −log σ(μ m): ∂/∂z = −σ(−μ m) [μ ∂m/∂z + m ∂μ/∂z]; detached μ drops the second term
    mu_term = m[..., None] * dkl if group == "ce_pa_mugrad" else 0.0
    return g_ce - delta * sig[..., None] * (kl[..., None] * dmargin + mu_term) / n


@pytest.mark.parametrize("group", ["ce_kl0.3", "ce_kl1", "ce_pa", "ce_pa_mugrad"])
def test_arm_gradients_match_closed_form(group):
    z, zr, y = _hand()
    assert (z.argmax(-1) != zr.argmax(-1)).mean() > 0.3  # the PA term is active
    logits = torch.tensor(z, requires_grad=True)
    loss, metrics = stacked_group_loss(group, logits, torch.tensor(y), torch.tensor(zr), 0.25, detach_mu=True)
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), _np_arm_grad(group, z, zr, y, 0.25), rtol=1e-9, atol=1e-12)
    if group.startswith("ce_kl"):  # value: Σ_s (CE_s + c · KL_s)
        lp = _np_log_softmax(z)
        ce = -np.take_along_axis(lp, y[..., None], -1)[..., 0].mean((1, 2))
        want = (ce + float(group[5:]) * _np_kl(z, zr).mean((1, 2))).sum()
        assert float(loss.detach()) == pytest.approx(want, rel=TOL["float64"])


def test_mugrad_differs_from_detached_pa():
    z, zr, y = _hand(3)
    grads = []
    for group in ("ce_pa", "ce_pa_mugrad"):
        logits = torch.tensor(z, requires_grad=True)
        stacked_group_loss(group, logits, torch.tensor(y), torch.tensor(zr), 0.3)[0].backward()
        grads.append(logits.grad.numpy())
    assert np.abs(grads[0] - grads[1]).max() > 1e-4


@pytest.mark.parametrize("bad", ["ce_kl0", "ce_kl-1", "ce_klnan", "ce_klinf", "ce_klx", "xx_pa", "ce_pa_other", "ce_"])
def test_loss_for_rejects_unknown_groups(bad):
    with pytest.raises(ValueError, match="e.g. ce_kl0.3"):
        loss_for(bad)


def test_regime_groups_and_labels():
    assert regime_groups("exp1", (0.1, 0.3, 1.0)) == ("ce", "ce_pa", "ce_pa_mugrad", "ce_kl0.1", "ce_kl0.3", "ce_kl1")
    assert regime_groups("exp2", (2.0,)) == ("csft", "csft_pa", "csft_pa_mugrad", "csft_kl2")
    assert [group_label(g) for g in ("ce", "ce_pa", "ce_pa_mugrad", "ce_kl0.3", "csft_kl1")] == [
        "CE", "CE+PA", "CE+PA (μ grad)", "CE+0.3·KL", "CSFT+1·KL"]


# ----------------------------------------------------------------------------------------------
# early stopping on hand-made validation curves
# ----------------------------------------------------------------------------------------------
CURVE = [3.0, 2.0, 2.5, 1.5, 1.7, 1.6, 1.4, 2.0]  # minimum 1.4 at epoch 6, an earlier local minimum at 3


@pytest.mark.parametrize("patience, want", [(None, 6), (3, 6), (2, 3), (1, 1)])
def test_early_stopping_picks_the_minimum_seen_before_stopping(patience, want):
    assert int(early_stopping_epoch(CURVE, patience)) == want


def test_early_stopping_ties_nan_and_batches():
    assert int(early_stopping_epoch([1.0, 1.0, 1.0])) == 0  # first of equal minima
    assert int(early_stopping_epoch([2.0, np.nan, 1.0])) == 2  # NaN is never an improvement
    batch = np.array([[CURVE, CURVE[::-1]], [[5.0] * 8, list(range(8, 0, -1))]])  # (2, 2, 8)
    np.testing.assert_array_equal(early_stopping_epoch(batch), [[6, 1], [0, 7]])


@pytest.mark.parametrize("patience", [0, -1, 1.5, True])
def test_early_stopping_rejects_bad_patience(patience):
    with pytest.raises(ValueError, match="patience"):
        early_stopping_epoch(CURVE, patience)


def test_early_stopping_rejects_an_empty_curve():
    with pytest.raises(ValueError, match="val_curve"):
        early_stopping_epoch(np.zeros((2, 0)))


# ----------------------------------------------------------------------------------------------
# the validation NLL and the per-model training NLL the study records
# ----------------------------------------------------------------------------------------------
def test_evaluate_nll_matches_a_per_model_loop():
    args = Args(vocab_size=6, context_len=3, response_len=5, eval_batch=3, seeds=2)
    pol = StackedSeqModel([1, 2, 3, 4], 6, 4, 8, 1, "linear").double()  # 2 groups × 2 seeds
    tok = torch.randint(6, (2, 7, 8), generator=torch.Generator().manual_seed(0))
    got = lstm.evaluate_nll(pol, tok, 2, args)
    with torch.no_grad():
        logits = lstm.response_logits(pol, tok.repeat(2, 1, 1), 3).numpy()  # (4, 7, 5, 6)
    for m in range(4):
        y = tok[m % 2, :, 3:].numpy()
        want = -np.take_along_axis(_np_log_softmax(logits[m]), y[..., None], -1).mean()
        assert got[m // 2, m % 2] == pytest.approx(want, rel=TOL["float64"])


def test_run_experiment_records_validation_and_training_nll():
    args = Args(vocab_size=8, context_len=3, response_len=6, n_train=32, n_eval=8, epochs=2, batch_size=16,
                eval_batch=16, embed_dim=4, policy_hidden=8, ref_hidden=8, seeds=2, progress=False)
    groups = ("ce", "ce_kl0.5")
    res = lstm.run_experiment("exp1", args, torch.device("cpu"), groups=groups, n_val=5)
    assert res["val_nll"].shape == (2, 2, 3) and res["train_nll"].shape == (2, 2, 2)
    # the CE group's training loss (theory.losses.nll_loss, mean over seeds) is its per-model NLL's seed mean
    np.testing.assert_allclose(res["train_nll"][0].mean(0), res["train_loss"]["ce"], rtol=1e-6)
    # both groups start from the same initialisation: identical epoch-0 validation NLL and metrics
    np.testing.assert_array_equal(res["val_nll"][0, :, 0], res["val_nll"][1, :, 0])
    assert np.isfinite(res["val_nll"]).all() and (res["val_nll"] > 0).all()
    assert lstm.run_experiment("exp1", args, torch.device("cpu"))["val_nll"] is None


# ----------------------------------------------------------------------------------------------
# the smoke run of the study: files, statistics recomputed from the npz, the overfitting regime
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("regimes_smoke")
    summary = lstm.main(["--preset", "regimes_smoke", "--out", str(out), "--no-progress"])
    return out, summary, dict(np.load(out / "metrics.npz"))


def test_smoke_writes_documented_outputs(smoke, capsys):
    out, summary, z = smoke
    for name in ("summary.json", "metrics.npz", "regimes_curves.png"):
        assert (out / name).stat().st_size > 0, name
    s = json.loads((out / "summary.json").read_text())
    assert s["study"] == "regimes" and s["preset"] == "regimes_smoke"
    assert set(s["runtime_s"]) == {"exp1/rich", "exp1/small", "total"}
    groups = list(regime_groups("exp1", (0.1, 0.3, 1.0)))
    for regime, (n, epochs) in {"rich": (64, 3), "small": (8, 80)}.items():
        r = s["regimes"]["exp1"][regime]
        assert r["groups"] == groups and (r["n_train"], r["epochs"], r["n_val"]) == (n, epochs, max(1, round(n / 4)))
        assert set(r["stopping"]) == {"final", "early"} and isinstance(r["dynamics"]["overfits"], bool)
        assert set(r["stopping"]["early"]["minus_base"]) == set(groups[1:])
        assert z[f"exp1/{regime}/ce_pa/curve/kl"].shape == (3, epochs + 1)
        assert z[f"exp1/{regime}/ce/train_nll"].shape == (3, epochs)


@pytest.mark.parametrize("regime", ["rich", "small"])
def test_smoke_paired_statistics_recomputed_from_npz(smoke, regime):
    _, summary, z = smoke
    r = summary["regimes"]["exp1"][regime]
    for rule in ("final", "early"):
        kl = {}
        for g in r["groups"]:
            curve, val = z[f"exp1/{regime}/{g}/curve/kl"], z[f"exp1/{regime}/{g}/val_nll"]
            ep = np.argmin(val, 1) if rule == "early" else np.full(3, curve.shape[1] - 1)  # numpy's first argmin
            kl[g] = curve[np.arange(3), ep]
            assert r["stopping"][rule]["epoch"][g]["mean"] == pytest.approx(ep.mean())
        for g in r["groups"][1:]:
            d = kl[g] - kl["ce"]
            got = r["stopping"][rule]["minus_base"][g]["eval/kl"]
            half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
            assert got["mean"] == pytest.approx(d.mean(), rel=1e-12, abs=1e-15)
            assert got["ci95"] == pytest.approx(half, rel=1e-9)
            assert got["rel_pct"] == pytest.approx(100 * (kl[g] / kl["ce"] - 1).mean(), rel=1e-9)
            assert got["verdict"] == ("lower" if d.mean() + half < 0 else "higher" if d.mean() - half > 0
                                      else "no difference")


def test_smoke_small_data_regime_overfits_seed_by_seed(smoke):
    """CE on 8 sequences: after its best held-out epoch the training NLL keeps falling and held-out KL rises."""
    _, _, z = smoke
    kl, train = z["exp1/small/ce/curve/kl"], z["exp1/small/ce/train_nll"]  # (S, 81), (S, 80)
    best = kl.argmin(1)
    assert (best < kl.shape[1] - 10).all()  # the minimum is well before the end
    assert (kl[:, -1] > 1.1 * kl.min(1)).all()  # held-out KL up by > 10% from its minimum, every seed
    assert (train[:, -1] < train[np.arange(3), np.maximum(best - 1, 0)] - 0.3).all()  # train NLL still falling
    # the reference's entropy is ≈ 1.5 nats/token: the last training NLL is below it (memorisation)
    assert (train[:, -1] < 1.0).all()


# ----------------------------------------------------------------------------------------------
# bad arguments of the study (one line on stderr, exit code 2)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["--study", "nope"], "--study"),
    (["--preset", "regimes_smoke", "--kl-coefs", "0.1,0"], "--kl-coefs"),
    (["--preset", "regimes_smoke", "--kl-coefs", "nan"], "--kl-coefs"),
    (["--preset", "regimes_smoke", "--val-frac", "0"], "--val-frac"),
    (["--preset", "regimes_smoke", "--val-frac", "1.5"], "--val-frac"),
    (["--preset", "regimes_smoke", "--val-frac", "0.01"], "at least 1 validation"),
    (["--preset", "regimes_smoke", "--small-n-train", "0"], "--small-n-train"),
    (["--preset", "regimes_smoke", "--small-epochs", "0"], "--small-epochs"),
    (["--preset", "regimes_smoke", "--batch-size", "16"], "--small-n-train 8"),
    (["--preset", "regimes_smoke", "--no-detach-mu"], "--no-detach-mu"),
])
def test_bad_regimes_arguments_exit_2_with_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        lstm.main(argv + ["--out", "/nonexistent/never-written"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
