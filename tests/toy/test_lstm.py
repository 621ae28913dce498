"""Tests of toy/lstm.py: CLI outputs, determinism, the training step's gradient, the metrics, bad arguments.

The references here do not import theory.losses: CE/CSFT/PA gradients with respect to the logits are
written in closed form with numpy (∂ log softmax(z)_y/∂z = e_y − p; PA's margin z_al − z_θ has
gradient e_al − e_θ), and the metrics are recomputed with numpy/scipy on hand-made distributions.
"""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from tests.tolerances import TOL
from theory.losses import csft_loss, pa_loss
from toy import lstm, lstm_train
from toy.lstm import (GROUPS, METRICS, Args, StackedLSTMLayer, StackedSeqModel, distribution_metrics,
                      response_logits, stacked_group_loss, training_loss)

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--seeds", "2", "--epochs", "2", "--n-train", "64", "--n-eval", "16", "--batch-size", "32",
        "--eval-batch", "16", "--policy-hidden", "16", "--ref-hidden", "16", "--ref2-hidden", "16",
        "--embed-dim", "8", "--vocab-size", "8", "--context-len", "3", "--response-len", "7", "--no-progress"]


# ----------------------------------------------------------------------------------------------
# CLI and outputs
# ----------------------------------------------------------------------------------------------
def test_smoke_cli_writes_documented_files(tmp_path, capsys):
    out = tmp_path / "smoke"
    lstm.main(["--preset", "smoke", "--out", str(out), "--no-progress"])  # in-process: the CLI parser, same code
    stdout = capsys.readouterr().out
    for name in ("summary.json", "metrics.npz", "kl_curves.png", "metrics_bar.png"):
        assert (out / name).stat().st_size > 0, name
    s = json.loads((out / "summary.json").read_text())
    assert s["preset"] == "smoke" and s["args"]["seeds"] == 3
    assert set(s["runtime_s"]) == {"exp1", "exp2", "total"}
    assert s["paper"]["exp1"]["values"]["ce"]["kl"] == 1.4575
    for exp, groups in GROUPS.items():
        e = s[exp]
        assert e["groups"] == list(groups)
        assert set(e) >= {"param_counts", "reference", "results", "train/final_loss", "pa_minus_base",
                          "rel_change_pct", "pa_better", "vs_paper", "pa_reduces_kl", "verdict"}
        for g in groups:
            assert set(e["results"][g]) == {f"eval/{k}" for k in METRICS}
            assert e["results"][g]["eval/kl"]["n"] == 3 and e["results"][g]["eval/kl"]["ci95"] > 0
        assert isinstance(e["pa_reduces_kl"], bool)
    # exp 1 reference has about twice the policy's parameters (the paper's setup)
    assert 1.8 < s["exp1"]["param_counts"]["ratio"] < 2.2
    z = np.load(out / "metrics.npz")
    assert z["exp1/ce_pa/curve/kl"].shape == (3, 4) and z["exp2/csft/final/cosine"].shape == (3,)
    np.testing.assert_array_equal(z["exp2/csft/curve/kl"][:, -1], z["exp2/csft/final/kl"])
    # the printed table holds both experiments and the paper's numbers
    assert "Pre-experiment 1" in stdout and "Pre-experiment 2" in stdout and "1.4575" in stdout


def test_same_seed_same_numbers_and_delta_schedule(tmp_path, monkeypatch):
    calls = []
    real = lstm_train.pa_delta
    monkeypatch.setattr(lstm_train, "pa_delta", lambda e, m, a, b: calls.append((e, m)) or real(e, m, a, b))
    s1 = lstm.main(TINY + ["--out", str(tmp_path / "a")])
    s2 = lstm.main(TINY + ["--out", str(tmp_path / "b")])
    a, b = (np.load(tmp_path / d / "metrics.npz") for d in "ab")
    assert set(a.files) == set(b.files) and len(a.files) > 0
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert s1["exp1"]["results"] == s2["exp1"]["results"] and s1["exp2"]["results"] == s2["exp2"]["results"]
    # δ_epoch uses epoch = 1..epochs (ends at the paper's cap 0.3), once per epoch per experiment
    assert calls[:4] == [(1, 2), (2, 2), (1, 2), (2, 2)]
    # ... and the seed matters
    args = dataclasses.replace(s1_args(s1), seed=1)
    other = lstm.run_experiment("exp1", args, torch.device("cpu"))
    assert not np.array_equal(other["curves"]["kl"][0, :, -1], a["exp1/ce/final/kl"])


def s1_args(summary: dict) -> Args:
    args = dict(summary["args"])
    args["experiments"] = tuple(args["experiments"])
    return Args(**args)


# ----------------------------------------------------------------------------------------------
# the losses the toy differentiates, against closed-form numpy gradients
# ----------------------------------------------------------------------------------------------
def _np_softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _hand_batch(seed=0, S=2, B=3, T=7, V=5):
    g = np.random.default_rng(seed)
    z = g.normal(size=(S, B, T, V)) * 2
    zr = g.normal(size=(S, B, T, V)) * 2
    y = g.integers(V, size=(S, B, T))
    return z, zr, y


def _np_grads(z, zr, y, delta):
    """Closed-form ∂/∂z of Σ_s loss_s for CE, CSFT (Qi et al. β_t) and PA, each a token mean per model."""
    S, B, T, V = z.shape
    p, q = _np_softmax(z), _np_softmax(zr)
    onehot = np.eye(V)[y]
    n = B * T
    g_ce = -(onehot - p) / n
    beta = np.array([0.5, 2, 2, 2, 2] + [0.1] * (T - 5))[None, None, :]
    lp = np.log(np.take_along_axis(p, y[..., None], -1)[..., 0])
    lq = np.log(np.take_along_axis(q, y[..., None], -1)[..., 0])
    w = 2 / (1 + np.exp(beta * (lp - lq)))  # 2(1 − σ(βΔ)) = −∂ℓ_t/∂ log π_θ(y_t)
    g_csft = -(w[..., None] * (onehot - p)) / n
    mu = (p * (np.log(p) - np.log(q))).sum(-1)  # detached KL(π_θ‖π_ref)
    a, th = zr.argmax(-1), z.argmax(-1)
    margin = np.take_along_axis(z, a[..., None], -1)[..., 0] - np.take_along_axis(z, th[..., None], -1)[..., 0]
    coef = -mu / (1 + np.exp(mu * margin))  # ∂/∂margin of −log σ(μ·margin)
    g_pa = coef[..., None] * (np.eye(V)[a] - np.eye(V)[th]) / n
    values = {"csft": (-(2 / beta) * -np.logaddexp(0, -beta * (lp - lq))).mean((1, 2)).sum(),
              "ce": (-lp).mean((1, 2)).sum()}
    return {"ce": g_ce, "ce_pa": g_ce + delta * g_pa, "csft": g_csft, "csft_pa": g_csft + delta * g_pa}, values


@pytest.mark.parametrize("group", ["ce", "ce_pa", "csft", "csft_pa"])
def test_group_loss_gradient_matches_closed_form(group):
    z, zr, y = _hand_batch()
    delta = 0.25
    logits = torch.tensor(z, requires_grad=True)
    loss, _ = stacked_group_loss(group, logits, torch.tensor(y), torch.tensor(zr), delta)
    loss.backward()
    want, values = _np_grads(z, zr, y, delta)
    np.testing.assert_allclose(logits.grad.numpy(), want[group], rtol=TOL["float64"], atol=TOL["float64"])
    if group in values:  # value: the sum over models of each model's token-mean loss
        assert float(loss.detach()) == pytest.approx(values[group], rel=TOL["float64"])


def test_pa_term_is_active_in_the_hand_batch():
    # the PA gradient above is only a check if some argmaxes disagree
    z, zr, _ = _hand_batch()
    assert (z.argmax(-1) != zr.argmax(-1)).mean() > 0.3


def test_training_step_gradient_equals_theory_losses_per_model():
    """The stacked step (all groups × seeds at once) gives each model the gradient of its own theory.losses loss."""
    args = Args(vocab_size=6, context_len=3, response_len=7, embed_dim=4, policy_hidden=5, seeds=2)
    S, B, groups, delta = 2, 3, GROUPS["exp2"], 0.2
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(6, (S, B, 10), generator=g)
    ref_logits = torch.randn(S, B, 7, 6, generator=g, dtype=torch.float64) * 2
    policy = StackedSeqModel(list(range(len(groups) * S)), 6, 4, 5, 2, "mlp", 1).double()
    total, _ = training_loss(policy, batch, ref_logits, groups, delta, args)
    total.backward()
    toy_grads = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    mask = torch.ones(B, 7, dtype=torch.float64)
    for gi, grp in enumerate(groups):
        for s in range(S):
            m = gi * S + s
            logits = response_logits(policy, batch.repeat(len(groups), 1, 1), 3)[m]  # (B, T, V)
            y = batch[s, :, 3:]
            logp = torch.log_softmax(logits, -1).gather(-1, y[..., None])[..., 0]
            ref_logp = torch.log_softmax(ref_logits[s], -1).gather(-1, y[..., None])[..., 0]
            loss = csft_loss(logp, ref_logp, mask)[0]
            if grp == "csft_pa":
                loss = loss + delta * pa_loss(logits, ref_logits[s], mask)[0]
            grads = torch.autograd.grad(loss, list(policy.parameters()), allow_unused=True)
            for p_toy, p_ref in zip(toy_grads, grads):
                torch.testing.assert_close(p_toy[m], p_ref[m], rtol=TOL["float64"], atol=TOL["float64"])
    assert all(float(gr.abs().sum()) > 0 for gr in toy_grads)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
def test_stacked_lstm_equals_torch_lstm():
    torch.manual_seed(0)
    layer = StackedLSTMLayer([torch.Generator().manual_seed(i) for i in range(3)], 4, 5).double()
    x = torch.randn(3, 2, 6, 4, dtype=torch.float64)
    y, (h, c) = layer(x)
    for m in range(3):
        ref = torch.nn.LSTM(4, 5, batch_first=True).double()
        with torch.no_grad():
            ref.weight_ih_l0.copy_(layer.w_ih[m].T)
            ref.weight_hh_l0.copy_(layer.w_hh[m].T)
            ref.bias_ih_l0.copy_(layer.b_ih[m, 0])
            ref.bias_hh_l0.copy_(layer.b_hh[m, 0])
        y_ref, (h_ref, c_ref) = ref(x[m])
        torch.testing.assert_close(y[m], y_ref, rtol=TOL["float64"], atol=TOL["float64"])
        torch.testing.assert_close(c[m], c_ref[0], rtol=TOL["float64"], atol=TOL["float64"])


def test_response_logits_are_causal_and_aligned():
    """Logit t of the response sees tokens up to context_len + t − 1 only (teacher forcing, no peeking)."""
    model = StackedSeqModel([0, 1], 7, 4, 6, 1, "residual", 2).double()
    tok = torch.randint(7, (2, 3, 9), generator=torch.Generator().manual_seed(1))
    c, t = 4, 2
    base = response_logits(model, tok, c)
    assert base.shape == (2, 3, 5, 7)
    changed = tok.clone()
    changed[:, :, c + t] = (changed[:, :, c + t] + 1) % 7  # response token t
    new = response_logits(model, changed, c)
    torch.testing.assert_close(new[:, :, : t + 1], base[:, :, : t + 1])  # predicting tokens 0..t: unchanged
    assert (new[:, :, t + 1] - base[:, :, t + 1]).abs().max() > 1e-6  # predicting token t+1 sees it


def test_models_are_independent_of_each_other_and_of_the_stack_size():
    a = StackedSeqModel([11, 12, 13], 6, 4, 5, 2, "mlp", 1)
    b = StackedSeqModel([12], 6, 4, 5, 2, "mlp", 1)
    for pa_, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa_[1], pb[0], rtol=0, atol=0)


def test_reference_calibration_hits_the_target_entropy():
    ref = StackedSeqModel([3, 4], 10, 4, 8, 1, "residual", 2, gain=5.0)
    tok = torch.randint(10, (2, 32, 12), generator=torch.Generator().manual_seed(0))
    scale = lstm.calibrate_logit_scale(ref, tok, 1.2)
    ref.logit_scale.copy_(scale)
    with torch.no_grad():
        lq = torch.log_softmax(ref(tok)[0].double(), -1)
    ent = -(lq.exp() * lq).sum(-1).mean((1, 2))
    np.testing.assert_allclose(ent.numpy(), 1.2, atol=1e-4)  # float32 logits; bisection to 60 halvings


def test_exp1_reference_has_about_twice_the_policy_parameters():
    args = Args()
    ref, pol = lstm.build_models("exp1", args, [0], [0])
    assert 1.8 < lstm.params_per_model(ref) / lstm.params_per_model(pol) < 2.2


# ----------------------------------------------------------------------------------------------
# metrics on hand-made distributions
# ----------------------------------------------------------------------------------------------
def test_metrics_of_identical_distributions():
    z = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 0.1, 0.2, -0.3]], dtype=torch.float64)
    m = distribution_metrics(z, z + 7.0)  # same distribution, shifted logits
    for k, want in {"kl": 0, "kl_ref_policy": 0, "prob_diff": 0, "cosine": 1, "pearson": 1, "overlap": 1,
                    "kl_similarity": 1, "argmax_agree": 1}.items():
        np.testing.assert_allclose(m[k].numpy(), want, atol=TOL["float64"], err_msg=k)


def test_metrics_of_known_pairs_against_numpy():
    p = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]])
    q = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6]])
    m = {k: v.numpy() for k, v in distribution_metrics(torch.tensor(np.log(p)), torch.tensor(np.log(q))).items()}
    kl = (p * np.log(p / q)).sum(-1)
    want = {
        "kl": kl,
        "kl_ref_policy": (q * np.log(q / p)).sum(-1),
        "prob_diff": np.abs(p - q).mean(-1),
        "cosine": (p * q).sum(-1) / np.linalg.norm(p, axis=-1) / np.linalg.norm(q, axis=-1),
        "pearson": np.array([stats.pearsonr(a, b)[0] for a, b in zip(p, q)]),
        "overlap": np.minimum(p, q).sum(-1),
        "kl_similarity": np.exp(-kl),
        "argmax_agree": np.array([0.0, 0.0, 0.0]),
    }
    for k in METRICS:
        np.testing.assert_allclose(m[k], want[k], rtol=TOL["float64"], atol=TOL["float64"], err_msg=k)
    # hand values: overlap 0.2+0.2+0.1, per-token difference (0.5+0.3+0.2)/3
    assert m["overlap"][0] == pytest.approx(0.5) and m["prob_diff"][0] == pytest.approx(1 / 3)
    assert m["kl"][0] == pytest.approx(0.7 * math.log(3.5) + 0.2 * math.log(0.4) + 0.1 * math.log(1 / 3))


def test_pearson_of_a_uniform_distribution_is_zero_not_nan():
    m = distribution_metrics(torch.zeros(1, 4, dtype=torch.float64), torch.tensor([[0.0, 1.0, 2.0, 3.0]]).double())
    assert float(m["pearson"][0]) == 0.0


def test_evaluate_gives_zero_kl_for_a_copy_of_the_reference():
    args = Args(vocab_size=6, context_len=3, response_len=5, n_eval=8, eval_batch=3, seeds=2)
    ref = StackedSeqModel([5, 6], 6, 4, 8, 1, "residual", 1)
    pol = StackedSeqModel([5, 6, 5, 6], 6, 4, 8, 1, "residual", 1)  # two groups, each a copy of the references
    tok = lstm.sample_sequences(ref, [torch.Generator().manual_seed(i) for i in range(2)], 8, args, "cpu")
    with torch.no_grad():
        ref_logits = response_logits(ref, tok, 3)
    res = lstm.evaluate(pol, tok, ref_logits, 2, args)
    assert res["kl"].shape == (2, 2)
    np.testing.assert_allclose(res["kl"], 0, atol=1e-6)  # float32 models
    np.testing.assert_allclose(res["overlap"], 1, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# bad arguments: one line on stderr, exit code 2
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["--preset", "nope"], "--preset"),
    (["--seeds", "0"], "--seeds"),
    (["--seeds", "1"], "at least 2 seeds"),
    (["--n-train", "-5"], "--n-train"),
    (["--policy-hidden", "0"], "--policy-hidden"),
    (["--delta-start", "-0.1"], "δ"),
    (["--delta-span", "nan"], "δ"),
    (["--delta-start", "0.1", "--delta-span", "-0.5"], "δ"),
    (["--ref-entropy", "9"], "--ref-entropy"),
    (["--experiments", "3"], "--experiments"),
    (["--lr", "0"], "--lr"),
    (["--epochs", "two"], "--epochs"),
])
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        lstm.main(argv + ["--out", "/nonexistent/never-written"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err


def test_bad_argument_from_the_real_cli():
    proc = subprocess.run([sys.executable, "-m", "toy.lstm", "--preset", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        lstm.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(Args):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "--preset" in text and "smoke" in text
