"""The TRL range FRPOTrainer is tested with, and the check that the installed TRL still has what it relies on.

FRPO (llm.frpo) overrides or calls private ``trl.GRPOTrainer`` methods. A TRL release that renames one would
otherwise train plain GRPO without a word (advantage mode: TRL's own advantages reach the loss) or fail late
(``None.device``). :func:`check_trl_compatibility` runs when an FRPOTrainer is built; the trainer also
checks at every loss that FRPO's scoring, advantages and loss were the ones used (llm.frpo).
"""
from __future__ import annotations

import inspect

from trl import GRPOTrainer

# The TRL range FRPOTrainer was tested with (pyproject pins it). FRPO overrides or calls private GRPOTrainer
# methods; a TRL that renames one would otherwise train plain GRPO without a word (advantage mode) or fail
# late (``None.device``). Checked when an FRPOTrainer is built (:func:`check_trl_compatibility`).
TESTED_TRL = ">=1.16,<1.17"
_TRL_METHODS = {  # name -> the leading parameters FRPO's override / call relies on
    "_calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("self", "inputs"),
    "_prepare_inputs": ("self", "generation_batch"),
    "_compute_loss": ("self", "model", "inputs"),
    "_get_per_token_logps_and_entropies": (
        "self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy",
        "compute_aux_loss", "pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
        "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids"),
}
_TRL_SOURCE = {  # name -> what its body must do for FRPO's overrides to take effect
    "_generate_and_score_completions": ("self._calculate_rewards(", '"advantages"'),
    "_prepare_inputs": ("self._generate_and_score_completions(",),
    "_compute_loss": ('inputs["advantages"]',),
}
_TRL_ATTRS = ("_logs", "_metrics", "reward_weights", "num_generations", "num_generations_eval", "_step",
              "_buffered_inputs", "num_iterations", "epsilon_high", "beta", "aux_loss_enabled")


class TRLCompatibilityError(RuntimeError):
    """The installed TRL lacks a private GRPOTrainer method / behaviour FRPOTrainer relies on."""


def _trl_error(what: str, problem: str) -> TRLCompatibilityError:
    import trl

    return TRLCompatibilityError(
        f"FRPOTrainer relies on trl.GRPOTrainer.{what} (tested with trl{TESTED_TRL}); the installed TRL "
        f"{trl.__version__} {problem}. Install a tested version (pip install 'trl{TESTED_TRL}') or port "
        "llm/frpo.py to this TRL: without it FRPO would silently train plain GRPO or fail mid-run.")


def check_trl_compatibility(base=GRPOTrainer) -> None:
    """Raise TRLCompatibilityError unless ``base`` has every private method FRPO overrides or calls, with the
    parameters FRPO passes, and their bodies still call / read what FRPO's overrides provide."""
    for name, params in _TRL_METHODS.items():
        fn = getattr(base, name, None)
        if not callable(fn):
            raise _trl_error(f"{name}{params[1:]}", "has no such method")
        got = tuple(inspect.signature(fn).parameters)
        if got[: len(params)] != params:
            raise _trl_error(f"{name}{params[1:]}", f"has {name}{got[1:]}")
    for name, needles in _TRL_SOURCE.items():
        try:
            src = inspect.getsource(getattr(base, name))
        except (OSError, TypeError):  # no source (compiled): the runtime checks still apply
            continue
        missing = [n for n in needles if n not in src]
        if missing:
            raise _trl_error(name, f"has a {name} that no longer contains {missing}")
