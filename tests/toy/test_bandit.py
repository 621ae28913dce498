"""toy/bandit.py: the CLI and its files, determinism, the trainer's gradient against the closed form,
and one-line errors for bad arguments (the RLVR path model: tests/toy/test_rlvr_paths.py).

The references here do not call the code they check: the policy gradient is rebuilt in numpy from the
features (∇log π(a|x) = φ(x, a) − E_π φ(x, ·)); CI half-widths come from scipy.stats.t.interval.
"""
from __future__ import annotations

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
from theory.losses import frpo_advantages, group_advantages
from toy import bandit
from toy._common import field_docs, mean_ci_axis, parse_args

REPO = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {"args", "preset", "runtime_s", "configs", "kl_levels", "reference", "results", "vs_grpo",
                "ablations", "rlvr", "vs_grpo_matched", "matching"}
RESULT_KEYS = {"train/reward", "train/kl_ref", "train/entropy", "sft/kl_final", "pg/kl_final",
               "sft/task_kl_final", "pg/task_reward_final"}
NPZ_KEYS = {"configs", "steps_train", "train_reward", "train_kl_ref", "train_entropy", "steps_sft", "sft_kl",
            "sft_reward", "sft_task", "steps_pg", "pg_kl", "pg_reward", "pg_task", "rhos", "worst_value",
            "ref_reward", "ref_entropy", "rlvr_betas", "rlvr_steps", "rlvr_tv_exact", "rlvr_tv_grpo_k3",
            "rlvr_drift", "rlvr_bound", "rlvr_ce_betas", "rlvr_ce_drift", "match_target", "match_beta", "match_kl",
            "match_rel_err", "match_bracketed", "match_evals"}
PNGS = ("landscape.png", "ablation_baseline.png", "ablation_jackknife.png", "ablation_kl_budget.png", "rlvr.png")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    summary = bandit.main(["--preset", "smoke", "--out", str(out), "--no-progress"])
    return out, summary


# ---------------------------------------------------------------------------------------------
# the CLI and its documented files
# ---------------------------------------------------------------------------------------------
def test_smoke_run_writes_documented_files(smoke):
    out, summary = smoke
    on_disk = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk)
    assert on_disk["preset"] == "smoke" and on_disk["args"]["seeds"] == 2
    names = [c["name"] for c in on_disk["configs"]]
    assert {"grpo", "frpo_lam0.2", "frpo_lam2", "frpo_lam0.2_nojk", "frpo_lam2_nobase", "grpo_beta0.32",
            "frpo_lam0.2_matched", "frpo_lam2_matched"} <= set(names)
    for name in names:
        keys = set(on_disk["results"][name])
        assert RESULT_KEYS <= keys
        for k in on_disk["kl_levels"]:
            assert {f"sft/reward@kl={k:g}", f"pg/reward@kl={k:g}", f"worst/reward@kl={k:g}"} <= keys
        assert set(on_disk["results"][name]["train/reward"]) == {"mean", "ci95", "n"}
    assert set(on_disk["vs_grpo"]) == {"frpo_lam0.2", "frpo_lam2"}
    assert set(on_disk["ablations"]) == {"no_baseline", "jackknife", "kl_budget"}
    with np.load(out / "metrics.npz") as m:
        assert NPZ_KEYS <= set(m.files)
        assert m["train_reward"].shape[:2] == (2, len(names))
        assert m["worst_value"].shape == (2, len(names), len(m["rhos"]))
    assert "KL-matched" in (out / "tables.md").read_text()
    for png in PNGS:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert on_disk["runtime_s"]["total"] < 60


def test_smoke_numbers_are_sane(smoke):
    """Training beats the reference; the worst case is ≤ the policy's reward and falls with ρ."""
    out, summary = smoke
    with np.load(out / "metrics.npz") as m:
        assert np.all(m["train_reward"][..., -1].mean(0) > m["ref_reward"].mean())
        wv, rhos = m["worst_value"], m["rhos"]
        assert rhos[0] == 0.0
        np.testing.assert_allclose(wv[..., 0], m["train_reward"][..., -1], atol=TOL["float64"])
        assert np.all(np.diff(wv, axis=-1) <= TOL["dual_1d"])
        # the landscape starts at KL = 0 and the logged KL is a real divergence
        assert np.all(m["sft_kl"][..., 0] == 0) and np.all(m["sft_kl"] >= 0) and np.all(m["pg_kl"] >= 0)


def test_same_seed_same_numbers(tmp_path):
    argv = ["--preset", "smoke", "--no-ablations", "--rlvr-steps", "20", "--no-progress"]
    for d, s in (("a", "3"), ("b", "3"), ("c", "4")):
        bandit.main(argv + ["--out", str(tmp_path / d), "--seed", s])
    arrays = [np.load(tmp_path / d / "metrics.npz") for d in "abc"]
    for key in arrays[0].files:
        assert np.array_equal(arrays[0][key], arrays[1][key]), key
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in "abc"]
    for s in summaries:
        s.pop("runtime_s")
        s["args"].pop("out")
    assert summaries[0] == summaries[1]
    assert summaries[0] != summaries[2]
    assert not np.array_equal(arrays[0]["train_reward"], arrays[2]["train_reward"])


def test_presets_are_overridden_by_options():
    a, preset = parse_args(bandit.BanditArgs, ["--preset", "smoke", "--lams", "0.1,0.5,2,inf", "--seeds", "4",
                                               "--group-size", "6", "--no-jackknife"], presets=bandit.PRESETS)
    assert preset == "smoke" and a.seeds == 4 and a.group_size == 6 and a.jackknife is False
    assert a.lams == (0.1, 0.5, 2.0, math.inf)
    assert a.train_steps == bandit.PRESETS["smoke"]["train_steps"]
    configs = bandit.build_configs(a)
    assert not any(c.group == "no_jackknife" for c in configs)  # nothing to ablate
    assert [c.lam for c in configs if c.group == "main"] == [0.1, 0.5, 2.0, math.inf]


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        bandit.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    docs = field_docs(bandit.BanditArgs)
    for field in bandit.BanditArgs.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in text
        assert docs[field][:30] in text, field
    assert "--preset" in text and "summary.json keys" in text


# ---------------------------------------------------------------------------------------------
# bad arguments: one line on stderr, exit code 2
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["--preset", "nope"], "nope"),
    (["--lams", "0.1,-1"], "-1"),
    (["--lams", "0"], "0"),
    (["--lams", "nan"], "nan"),
    (["--arms", "1"], "--arms=1"),
    (["--group-size", "1"], "--group-size=1"),
    (["--scale", "half"], "half"),
    (["--seeds", "two"], "two"),
    (["--plateau-reward", "0.9,0.2"], "0.9"),
    (["--match-beta-range", "1,0.5"], "--match-beta-range=1.0,0.5"),
    (["--match-rtol", "0"], "--match-rtol=0"),
])
def test_bad_arguments_exit_2_with_one_line(argv, needle, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        bandit.main(argv + ["--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n") and "error" in err and needle in err
    assert not any(tmp_path.iterdir())  # nothing ran


def test_bad_preset_from_the_shell_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "toy.bandit", "--preset", "nope"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "nope" in proc.stderr


# ---------------------------------------------------------------------------------------------
# the trainer's gradient is the closed form of theory.losses on the same samples
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["advantage", "ratio"])
@pytest.mark.parametrize("scale", ["max1", "lambda"])
def test_train_loss_gradient_equals_closed_form(form, scale):
    a, _ = parse_args(bandit.BanditArgs, ["--seeds", "3", "--arms", "16", "--contexts", "5", "--group-size", "4",
                                          "--form", form, "--scale", scale], presets=bandit.PRESETS)
    C = bandit.Config
    configs = [C("grpo", "main", math.inf, True, True, 0.1), C("a", "main", 0.3, True, True, 0.05),
               C("b", "main", 2.0, False, True, 0.0), C("c", "main", 0.5, True, False, 0.02),
               C("d", "main", 0.7, False, False, 0.3)]
    gen = torch.Generator().manual_seed(0)
    env = bandit.make_bandit(a, gen)
    S, V, G = a.seeds, len(configs), a.group_size
    theta = (env.theta_ref + torch.randn(S, V, env.phi.shape[-1], generator=gen, dtype=torch.float64)).requires_grad_(True)
    ref_logp = bandit.log_policy(env.theta_ref.expand(S, 1, -1), env.phi)
    logp = bandit.log_policy(theta, env.phi)
    arms = bandit.sample(logp, G, gen)  # (S, V, C, G)
    loss = bandit.train_loss(logp, ref_logp, env.reward.unsqueeze(1), arms, configs, a)
    (grad,) = torch.autograd.grad(loss, theta)

    # independent reference: numpy softmax policy, score φ(a) − E_π φ, coefficient −Â + β(1 − π_ref/π)
    phi, th, r = env.phi.numpy(), theta.detach().numpy(), env.reward.numpy()
    arms_np = arms.numpy()
    expected = np.zeros_like(th)
    for s in range(S):
        logits_ref = phi[s] @ env.theta_ref.numpy()
        pref = np.exp(logits_ref - logits_ref.max(-1, keepdims=True))
        pref /= pref.sum(-1, keepdims=True)
        for v, cfg in enumerate(configs):
            logits = phi[s] @ th[s, v]  # (C, K)
            pi = np.exp(logits - logits.max(-1, keepdims=True))
            pi /= pi.sum(-1, keepdims=True)
            mean_phi = np.einsum("ck,ckd->cd", pi, phi[s])
            rew = torch.tensor(r[s][np.arange(a.contexts)[:, None], arms_np[s, v]].reshape(-1))  # (C·G,)
            adv = (group_advantages(rew, G) if math.isinf(cfg.lam) else
                   frpo_advantages(rew, G, cfg.lam, jackknife=cfg.jackknife, scale=scale, baseline=cfg.baseline))
            adv = adv.numpy().reshape(a.contexts, G)
            for c in range(a.contexts):
                for g in range(G):
                    k = arms_np[s, v, c, g]
                    coef = -adv[c, g] + cfg.beta * (1 - pref[c, k] / pi[c, k])
                    expected[s, v] += coef * (phi[s, c, k] - mean_phi[c]) / (a.contexts * G)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=0, atol=TOL["float64"])
    assert np.abs(expected).max() > 1e-3  # the check is not vacuous


def test_reward_at_kl_interpolates_first_crossing():
    kl = np.array([[0.0, 0.1, 0.3, 0.2, 0.6], [0.0, 0.01, 0.02, 0.03, 0.04]])
    rew = np.array([[1.0, 0.9, 0.5, 0.7, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]])
    got = bandit.reward_at_kl(kl, rew, 0.2)
    assert got[0] == pytest.approx(0.7, abs=TOL["float64"])  # halfway between (0.1, 0.9) and (0.3, 0.5)
    assert np.isnan(got[1])  # never reached


def test_mean_ci_axis_is_the_t_interval():
    x = np.array([[0.3, 1.0], [0.5, np.nan], [0.9, 2.0], [0.4, 4.0]])
    m, h, n = mean_ci_axis(x)
    for j in range(2):
        col = x[:, j][np.isfinite(x[:, j])]
        lo, hi = stats.t.interval(0.95, len(col) - 1, loc=col.mean(), scale=stats.sem(col))
        assert m[j] == pytest.approx(col.mean(), abs=TOL["float64"])
        assert h[j] == pytest.approx((hi - lo) / 2, abs=TOL["float64"])
        assert n[j] == len(col)
