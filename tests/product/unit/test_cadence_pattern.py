"""template.yaml's FollowUpCadence pattern accepts exactly what the poller's parser accepts.

A value the template accepts and the poller refuses deploys, then fails every poll (``1h:5m`` did). The
pattern is generated (``comms_bridge_tools.cadence_pattern``); these tests hold it to ``Cadence.parse`` on
a table of known cases and on generated values: agreement wherever every age is one the pattern can order
(whole hours to 48h, whole days to 7d) and every number has at most nine digits, and nowhere a value the
pattern takes that the parser refuses.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from comms_bridge.poller.discovery import DEFAULT_CADENCE, Cadence, parse_duration
from comms_bridge_tools.cadence_pattern import AGE_HOURS, MAX_DIGITS, allowed_pattern, synced
from comms_bridge_tools.local_stack import TEMPLATE_PATH, load_template

PATTERN = re.compile(allowed_pattern())
AGES = {timedelta(hours=hours) for hours in AGE_HOURS}


def template_accepts(value: str) -> bool:
    """CloudFormation's check: the whole value matches AllowedPattern."""
    return PATTERN.fullmatch(value) is not None


def poller_accepts(value: str) -> bool:
    try:
        Cadence.parse(value)
    except (ValueError, OverflowError):  # OverflowError: a duration beyond what timedelta holds
        return False
    return True


def within_limits(value: str) -> bool:
    """Every number has at most MAX_DIGITS digits besides leading zeros, and every age that is a duration
    is one the pattern orders. Splits like the parser does."""
    if any(len(number.lstrip("0")) > MAX_DIGITS for number in re.findall(r"[0-9]+", value)):
        return False
    for part in filter(None, (p.strip() for p in value.replace("=", ":").split(","))):
        try:
            age = parse_duration(part.partition(":")[0])
        except ValueError:
            continue
        if age not in AGES:
            return False
    return True


# ---------------------------------------------------------------- the template holds the generated pattern


def test_template_pattern_is_generated() -> None:
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    assert synced(text) == text, "run: python -m comms_bridge_tools.cadence_pattern"
    parameter = load_template()["Parameters"]["FollowUpCadence"]
    assert parameter["AllowedPattern"] == allowed_pattern()
    assert template_accepts(parameter["Default"]) and parameter["Default"] == DEFAULT_CADENCE


def test_pattern_fits_cloudformation_limits() -> None:
    # CloudFormation caps parameter defaults and allowed values at 4,096 characters; stay under that too.
    assert len(allowed_pattern()) < 4096
    assert "(?<" not in allowed_pattern() and "(?P" not in allowed_pattern()  # Java and Python alike


# ---------------------------------------------------------------- a table of known cases


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("1h:0,24h:15m,7d:1h", True),
        ("1h:0", True),
        ("1h=every,24h=15m", True),
        (" 2h : EVERY , 24h:15M ,", True),
        (",,1h:0,,", True),
        ("60m:0,1d:1h", True),
        ("3600:0,7200s:10m", True),
        ("01h:00,048h:0001h", True),
        ("1h:0,2880 m:5m", True),  # 48 hours, written in minutes
        ("1h:0,48h:1h,3d:2h,7d:6h", True),
        ("1h:5m", False),  # the first band must be every run (the example)
        ("30m:0", False),  # the every-run band is at least an hour
        ("1h:0,24h:0", False),  # only the first band is every run
        ("1h:0,24h:15m,24h:1h", False),  # ages strictly ascending
        ("1h:0,7d:1h,24h:15m", False),
        ("24h:0,1d:5m", False),  # 24h and 1d are the same age
        ("1H:0", False),  # the age's unit is lower case (the interval's is not)
        ("1h:0,24h:15x", False),
        ("1h:0,24h", False),
        ("1h::0", False),
        ("1h:0:5", False),
        ("1h:0,24h:1h:5m", False),
        ("", False),
        (" , ", False),
        ("every:0", False),
    ],
)
def test_known_values(value: str, accepted: bool) -> None:
    assert poller_accepts(value) is accepted
    assert template_accepts(value) is accepted


@pytest.mark.parametrize("value", ["90m:0", "1h:0,60h:1h", "1h:0,8d:1h", "1h:0,24h:1000000000s"])
def test_beyond_the_limits_only_the_poller_accepts(value: str) -> None:
    assert not within_limits(value)
    assert poller_accepts(value) and not template_accepts(value)


# ---------------------------------------------------------------- generated values

_blank = st.sampled_from(["", "", " ", "  ", "\t"])
_zeros = st.sampled_from(["", "", "0", "00"])


@st.composite
def _duration(draw: st.DrawFn, *, age: bool) -> str:
    """A duration as someone might write it: often a whole hour of the pattern's set, in any unit."""
    if draw(st.booleans()):
        hours = draw(st.sampled_from([*AGE_HOURS, 49, 60, 169, 192]))
        unit = draw(st.sampled_from(["h", "m", "s", "", "d"] if hours % 24 == 0 else ["h", "m", "s", ""]))
        number = {"h": hours, "m": hours * 60, "s": hours * 3600, "": hours * 3600, "d": hours // 24}[unit]
    else:
        number = draw(st.one_of(st.integers(0, 200), st.integers(0, 10**11)))
        unit = draw(st.sampled_from(["", "s", "m", "h", "d"]))
    if not age or draw(st.integers(0, 9)) == 0:
        unit = draw(st.sampled_from([unit, unit.upper(), "x"]))
    return f"{draw(_zeros)}{number}{draw(_blank)}{unit}"


@st.composite
def _interval(draw: st.DrawFn) -> str:
    return draw(
        st.one_of(
            st.sampled_from(["0", "00", "every", "EVERY", "Every", "0m", "0M", "00 H", "", "ever"]),
            _duration(age=False),
        )
    )


@st.composite
def cadences(draw: st.DrawFn) -> str:
    bands = [
        f"{draw(_blank)}{draw(_duration(age=True))}{draw(_blank)}"
        f"{draw(st.sampled_from([':', ':', '=', '::', '']))}{draw(_blank)}{draw(_interval())}{draw(_blank)}"
        for _ in range(draw(st.integers(1, 5)))
    ]
    separators = [draw(st.sampled_from([",", ",", ", ", ",,", " , "])) for _ in bands]
    text = "".join(band + separator for band, separator in zip(bands, separators, strict=True))
    return draw(st.sampled_from(["", ",", " "])) + text[: -len(separators[-1])] + draw(_blank)


@settings(max_examples=1000, deadline=None)
@given(cadences())
@example("1h:0,24h:15m,7d:1h")
@example("1h:5m")
@example("2h:0,2h:1h")
def test_pattern_and_parser_agree_on_generated_cadences(value: str) -> None:
    template, poller = template_accepts(value), poller_accepts(value)
    assert not template or poller, f"the template would deploy {value!r}, which every poll refuses"
    if within_limits(value):
        assert template == poller, value


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="0123456789smhdSMHDevryEVRY:=, \tx", max_size=30))
def test_the_template_never_takes_what_the_poller_refuses(value: str) -> None:
    if template_accepts(value):
        assert poller_accepts(value), value
    elif within_limits(value):
        assert not poller_accepts(value), value
