"""The bad-input contract shared by tests/theory/test_bad_input.py and tests/llm/test_bad_input_llm.py.

A bad call raises exactly one ValueError (a subclass such as llm.config.ConfigError counts): nothing
chained behind it (no TypeError/RuntimeError from inside numpy or torch), a message that names the
argument and shows the offending value, states what is allowed, and says how to fix it.
"""
from __future__ import annotations

import re

import pytest

# a fix is an instruction that opens a clause ("...; pass e.g. beta=0.1", "... Fix: normalize ...")
FIX = re.compile(r"(?i)\bfix:\s+\S|(?:[;.]\s+)(?:[\w.]+\s+){0,2}?(pass|use|pick|give|reshape|clean|"
                 r"normalize|drop|mark|lay|sample|match|compute|check|clamp|rescale|solve|call|keep|"
                 r"flatten|restrict|set|choose|add|remove|put|write|name)\b")


def assert_one_clear_value_error(call, arg: str, value: str, whole_word: bool = True) -> str:
    """Run ``call`` and check the contract; returns the message."""
    with pytest.raises(Exception) as info:
        call()
    err = info.value
    assert isinstance(err, ValueError), f"{type(err).__name__}: {err}"
    assert type(err) is ValueError or type(err).__module__.startswith(("theory", "llm")), type(err)
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), (
        f"chained behind {err.__context__!r}")
    msg = str(err)
    named = (re.search(rf"(?<![\w.]){re.escape(arg)}(?!\w)", msg) if whole_word else arg in msg)
    assert named, f"argument {arg!r} not named in: {msg}"
    assert value in msg, f"value {value!r} not shown in: {msg}"
    assert FIX.search(msg), f"no fix in: {msg}"
    return msg
