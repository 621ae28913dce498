"""The LSTM models of the CSFT+PA toy (``toy.lstm``): M stacked models with a leading model axis.

Every model of a stack is initialised from its own seed, so a seed's model does not depend on how many
models sit beside it; one ``bmm`` applies all M at once (seeds and loss groups as a batch dimension).
What lives here: the stacked layers and heads, the pre-experiments' architectures (``build_models``),
the reference's logit calibration and ancestral sampling, teacher-forced response logits, per-token
log-probabilities and the per-position distribution metrics (KL, overlap, ...; defined in the module
docstring of ``toy.lstm``, which is the CLI help). The experiment (data streams, losses, training loop,
reports) is ``toy.lstm``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from theory.losses import aggregate

__all__ = ["StackedLinear", "StackedLSTMLayer", "StackedSeqModel", "LinearHead", "ResidualHead", "MLPHead",
           "HEADS", "build_models", "params_per_model", "calibrate_logit_scale", "sample_sequences",
           "response_logits", "token_logp", "METRICS", "HIGHER_IS_BETTER", "distribution_metrics", "exact_kl",
           "kl_control_loss"]


# ----------------------------------------------------------------------------------------------
# models with a leading model axis M = (groups × seeds); every model is initialised from its own seed
# ----------------------------------------------------------------------------------------------
def _uniform(gens: list[torch.Generator], shape: tuple, bound: float) -> Tensor:
    """(M, *shape) uniform(−bound, bound), model m drawn from gens[m] (PyTorch's default init range)."""
    return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in gens])


class StackedLinear(nn.Module):
    """M independent affine maps x ↦ x W_m + b_m applied with one ``baddbmm``; x (M, N, d_in)."""

    def __init__(self, gens, d_in: int, d_out: int, gain: float = 1.0):
        super().__init__()
        bound = gain / math.sqrt(d_in)
        self.weight = nn.Parameter(_uniform(gens, (d_in, d_out), bound))  # (M, d_in, d_out)
        self.bias = nn.Parameter(_uniform(gens, (1, d_out), bound))  # (M, 1, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class StackedLSTMLayer(nn.Module):
    """M independent LSTM layers (gate order i, f, g, o as ``nn.LSTM``); x (M, B, T, d_in)."""

    def __init__(self, gens, d_in: int, hidden: int, gain: float = 1.0):
        super().__init__()
        bound = gain / math.sqrt(hidden)
        self.hidden = hidden
        self.w_ih = nn.Parameter(_uniform(gens, (d_in, 4 * hidden), bound))  # (M, d_in, 4H)
        self.w_hh = nn.Parameter(_uniform(gens, (hidden, 4 * hidden), bound))  # (M, H, 4H)
        self.b_ih = nn.Parameter(_uniform(gens, (1, 4 * hidden), bound))  # (M, 1, 4H)
        self.b_hh = nn.Parameter(_uniform(gens, (1, 4 * hidden), bound))

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        m, b, t, _ = x.shape
        if state is None:
            h = x.new_zeros(m, b, self.hidden)
            c = x.new_zeros(m, b, self.hidden)
        else:
            h, c = state
        xw = torch.baddbmm(self.b_ih + self.b_hh, x.reshape(m, b * t, -1), self.w_ih).view(m, b, t, -1)  # (M,B,T,4H)
        outs = []
        for xw_t in xw.unbind(2):  # unbind, not xw[:, :, t]: select's backward would fill a full zero tensor per step
            gates = torch.baddbmm(xw_t, h, self.w_hh)  # (M, B, 4H)
            i, f, g, o = gates.chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, 2), (h, c)  # (M, B, T, H)


class StackedSeqModel(nn.Module):
    """Embedding → ``lstm_layers`` LSTM layers → a head from ``HEADS``; M models with a leading axis.

    forward(tokens (M, B, T), state) → logits (M, B, T, V) · ``logit_scale`` (M,) buffer, new state.
    """

    def __init__(self, model_seeds: list[int], vocab: int, embed: int, hidden: int, lstm_layers: int,
                 head: str, head_arg: int = 0, gain: float = 1.0):
        super().__init__()
        gens = [torch.Generator().manual_seed(int(s)) for s in model_seeds]
        self.embedding = nn.Parameter(torch.stack([torch.randn(vocab, embed, generator=g) for g in gens]))
        self.lstm = nn.ModuleList(
            [StackedLSTMLayer(gens, embed if k == 0 else hidden, hidden, gain) for k in range(lstm_layers)])
        self.head_kind = head
        self.head = HEADS[head](gens, hidden, vocab, head_arg, gain)
        self.register_buffer("logit_scale", torch.ones(len(model_seeds)))

    def forward(self, tokens: Tensor, state: list | None = None):
        m = tokens.shape[0]
        x = self.embedding[torch.arange(m, device=tokens.device)[:, None, None], tokens]  # (M, B, T, E)
        new_state = []
        for k, layer in enumerate(self.lstm):
            x, s = layer(x, None if state is None else state[k])
            new_state.append(s)
        mm, b, t, h = x.shape
        logits = self.head(x.reshape(mm, b * t, h)).view(mm, b, t, -1)
        return logits * self.logit_scale.view(-1, 1, 1, 1), new_state


class LinearHead(nn.Module):
    """One FC layer H → V (the pre-experiment-1 policy)."""

    def __init__(self, gens, hidden, vocab, _, gain=1.0):
        super().__init__()
        self.out = StackedLinear(gens, hidden, vocab, gain)

    def forward(self, h):
        return self.out(h)


class ResidualHead(nn.Module):
    """``n_blocks`` residual blocks h ← h + W₂ relu(W₁ h), then H → V (the pre-experiment-1 reference)."""

    def __init__(self, gens, hidden, vocab, n_blocks, gain=1.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            [nn.ModuleList([StackedLinear(gens, hidden, hidden, gain), StackedLinear(gens, hidden, hidden, gain)])
             for _ in range(n_blocks)])
        self.out = StackedLinear(gens, hidden, vocab, gain)

    def forward(self, h):
        for w1, w2 in self.blocks:
            h = h + w2(torch.relu(w1(h)))
        return self.out(h)


class MLPHead(nn.Module):
    """FC H → ``factor``·H, relu, FC → V: factor 1 is width-preserving (exp 2 policy), 2 expanding (exp 2 ref)."""

    def __init__(self, gens, hidden, vocab, factor, gain=1.0):
        super().__init__()
        self.fc = StackedLinear(gens, hidden, factor * hidden, gain)
        self.out = StackedLinear(gens, factor * hidden, vocab, gain)

    def forward(self, h):
        return self.out(torch.relu(self.fc(h)))


HEADS = {"linear": LinearHead, "residual": ResidualHead, "mlp": MLPHead}


def build_models(exp: str, args, ref_seeds: list[int], policy_seeds: list[int]):
    """The (reference, policy) architectures of a pre-experiment; reference has S models, policy G·S."""
    v, e = args.vocab_size, args.embed_dim
    if exp == "exp1":
        ref = StackedSeqModel(ref_seeds, v, e, args.ref_hidden, 1, "residual", args.ref_blocks, args.ref_init_gain)
        pol = StackedSeqModel(policy_seeds, v, e, args.policy_hidden, 1, "linear")
    else:
        ref = StackedSeqModel(ref_seeds, v, e, args.ref2_hidden, 3, "mlp", 2, args.ref_init_gain)
        pol = StackedSeqModel(policy_seeds, v, e, args.policy_hidden, 2, "mlp", 1)
    return ref, pol


def params_per_model(model: StackedSeqModel) -> int:
    """Parameters of one of the M stacked models."""
    return sum(p[0].numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# the reference as a teacher: logit calibration, ancestral sampling; teacher-forced logits
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def calibrate_logit_scale(ref: StackedSeqModel, tokens: Tensor, target: float) -> Tensor:
    """Per model, the scalar α with mean entropy of softmax(α·logits) on ``tokens`` (S, N, L) equal to ``target``.

    Entropy of softmax(α z) is non-increasing in α ≥ 0, so bisection on log α finds it.
    """
    ref.logit_scale.fill_(1.0)
    z = ref(tokens)[0].double()  # (S, N, L, V)
    lo = torch.full((z.shape[0],), math.log(1e-3), dtype=torch.float64)
    hi = torch.full_like(lo, math.log(1e4))
    for _ in range(60):
        mid = (lo + hi) / 2
        logq = torch.log_softmax(z * mid.exp().view(-1, 1, 1, 1).to(z), -1)
        ent = -(logq.exp() * logq).sum(-1).mean((1, 2)).cpu()
        lo = torch.where(ent > target, mid, lo)  # too flat → larger α
        hi = torch.where(ent > target, hi, mid)
    return ((lo + hi) / 2).exp().float()


@torch.no_grad()
def sample_sequences(ref: StackedSeqModel, gens: list[torch.Generator], n: int, args, device) -> Tensor:
    """(S, n, context_len + response_len) tokens: uniform contexts, then ancestral samples from π_ref.

    Sampling is the exponential race argmin_v E_v / q_v with E ~ Exp(1) drawn from each seed's generator.
    """
    ctx = torch.stack([torch.randint(args.vocab_size, (n, args.context_len), generator=g) for g in gens]).to(device)
    logits, state = ref(ctx)
    last = logits[:, :, -1]  # (S, n, V)
    out = [ctx]
    for _ in range(args.response_len):
        race = torch.stack([torch.empty(n, args.vocab_size).exponential_(generator=g) for g in gens]).to(device)
        tok = (race.log() - torch.log_softmax(last.double(), -1)).argmin(-1)  # (S, n)
        out.append(tok[:, :, None])
        logits, state = ref(tok[:, :, None], state)
        last = logits[:, :, -1]
    return torch.cat(out, 2)


def response_logits(model: StackedSeqModel, tokens: Tensor, context_len: int) -> Tensor:
    """Teacher-forced logits predicting the response tokens: tokens (M, B, L) → (M, B, response_len, V)."""
    logits, _ = model(tokens[:, :, :-1])
    return logits[:, :, context_len - 1:]

# ----------------------------------------------------------------------------------------------
# per-token log-probabilities and per-position distribution metrics
# ----------------------------------------------------------------------------------------------
METRICS = ("kl", "kl_ref_policy", "prob_diff", "cosine", "pearson", "overlap", "kl_similarity", "argmax_agree")
HIGHER_IS_BETTER = {"kl": False, "kl_ref_policy": False, "prob_diff": False, "cosine": True, "pearson": True,
                    "overlap": True, "kl_similarity": True, "argmax_agree": True}


def token_logp(logits: Tensor, targets: Tensor) -> Tensor:
    """log softmax(logits)[target]: (B, T, V), (B, T) → (B, T)."""
    return torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)


def distribution_metrics(logits: Tensor, ref_logits: Tensor) -> dict[str, Tensor]:
    """Per-position metrics of p = softmax(logits) (policy) vs q = softmax(ref_logits): (..., V) → (...) each.

    Definitions: the module docstring of ``toy.lstm``. Computed in float64.
    """
    logp = torch.log_softmax(logits.double(), -1)
    logq = torch.log_softmax(ref_logits.double(), -1)
    p, q = logp.exp(), logq.exp()
    kl = (p * (logp - logq)).sum(-1)
    pc, qc = p - p.mean(-1, keepdim=True), q - q.mean(-1, keepdim=True)
    denom = torch.sqrt((pc * pc).sum(-1) * (qc * qc).sum(-1))
    return {
        "kl": kl,
        "kl_ref_policy": (q * (logq - logp)).sum(-1),
        "prob_diff": (p - q).abs().mean(-1),
        "cosine": (p * q).sum(-1) / (p.norm(dim=-1) * q.norm(dim=-1)),
        "pearson": torch.where(denom > 0, (pc * qc).sum(-1) / denom.clamp_min(1e-300), torch.zeros_like(denom)),
        "overlap": torch.minimum(p, q).sum(-1),
        "kl_similarity": torch.exp(-kl),
        "argmax_agree": (p.argmax(-1) == q.argmax(-1)).double(),
    }


def exact_kl(logits: Tensor, ref_logits: Tensor) -> Tensor:
    """KL(π_θ‖π_ref) = Σ_v p_v (log p_v − log q_v) per position, exact over the vocabulary: (..., V) → (...).

    p = softmax(``logits``) (differentiable), q = softmax(``ref_logits``) (detached: the reference is frozen).
    The direction of the PA loss's μ_t (CSFT+PA paper Eq. 6) and of the toy's ``kl`` metric.
    """
    logp = torch.log_softmax(logits, -1)
    logq = torch.log_softmax(ref_logits.detach(), -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def kl_control_loss(logits: Tensor, ref_logits: Tensor, mask: Tensor) -> Tensor:
    """The KL control term: token mean of ``exact_kl`` over the response positions, Σ_t m_t KL_t / Σ_t m_t.

    logits, ref_logits (B, T, V) teacher-forced at the same positions, mask (B, T). Training on
    base + c·this is the explicit "pull π_θ toward π_ref" the PA term is compared with.
    Deviation: not in the paper (a control of ours). The per-position KL is written here (``theory.losses``'
    ``kl_k3`` is the sampled k3 estimator, not the exact sum over the vocabulary); the token mean is
    ``theory.losses.aggregate``.
    """
    if logits.ndim != 3 or ref_logits.shape != logits.shape or tuple(mask.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"logits and ref_logits must both be (B, T, V) and mask (B, T); got {tuple(logits.shape)}, "
                         f"{tuple(ref_logits.shape)} and {tuple(mask.shape)}")
    return aggregate(exact_kl(logits, ref_logits), mask, "token_mean")
