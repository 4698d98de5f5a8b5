"""The ``AllowedPattern`` of template.yaml's ``FollowUpCadence``: the values ``Cadence.parse`` accepts.

A value the template accepts but the poller refuses deploys fine and then fails every poll, so the pattern is
built from the parser's rules, not written by hand:

- the syntax of ``comms_bridge.poller.discovery.Cadence.parse`` and ``parse_duration``: bands ``age:interval``
  (or ``age=interval``) separated by commas, empty parts ignored, blanks around every token, durations
  ``N``/``Ns``/``Nm``/``Nh``/``Nd`` with leading zeros, an interval ``every`` in any case or a unit in any
  case (the parser lower-cases the interval, not the age);
- the first band is every run (interval ``0``, ``every`` or any zero duration), every later band has an
  interval above zero;
- the ages are strictly ascending and the first is at least one hour.

A regular expression cannot compare two durations in general (``90m`` against ``2h`` takes arithmetic), so
the ages are drawn from a finite, ordered set: whole hours up to 48h, then whole days up to 7d (Twilio keeps
operations 7 days, so an older band never applies), in every spelling the parser reads (``2h``, ``120m``,
``7200s``, ``7200``, ``0002h``, ``2d``). Strict ascent is then a chain of optional groups in that order, one
per age, in a lookahead. Numbers have at most 9 digits besides leading zeros (``999999999d`` is the largest
interval ``timedelta`` holds). Within those two limits the pattern and the parser agree exactly
(``tests/product/unit/test_cadence_pattern.py`` checks it on generated values); beyond them the pattern
refuses what the parser would take (a ``90m`` or ``60h`` age, a ten-digit number), never the other way round.

The pattern uses only what Java's and Python's regular expressions share (CloudFormation checks
``AllowedPattern`` with Java's): groups, alternation, ``\\s``, classes, a negative lookahead.

    python -m comms_bridge_tools.cadence_pattern [--check] [template.yaml]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
TEMPLATE: Final = REPO_ROOT / "template.yaml"
# Whole hours up to two days, then whole days up to seven: ages a cadence has a use for, few enough to keep
# the pattern under 4 KB (CloudFormation caps a parameter's default and allowed values at 4,096 characters).
AGE_HOURS: Final = (*range(1, 49), *range(72, 7 * 24 + 1, 24))
MAX_DIGITS: Final = 9

_NUMBER: Final = rf"0*[1-9][0-9]{{0,{MAX_DIGITS - 1}}}"
_ZERO: Final = r"(?:[eE][vV][eE][rR][yY]|0+\s*[smhdSMHD]?)"
_NONZERO: Final = rf"{_NUMBER}\s*[smhdSMHD]?"
_AGE: Final = rf"\s*{_NUMBER}\s*[smhd]?\s*"
_SEPARATOR: Final = r"[\s,]*"
# The pattern's line in the template (the schema-registry block is generated the same way).
_LINE: Final = re.compile(r"^(  FollowUpCadence:\n(?:    .*\n)*?    AllowedPattern: )(.*)$", re.MULTILINE)


def _band(interval: str) -> str:
    return rf"{_AGE}[:=]\s*{interval}\s*"


def _spellings(hours: int) -> str:
    """Every way ``parse_duration`` reads a whole number of hours (leading zeros come from the caller)."""
    forms = [rf"{hours}\s*h", rf"{hours * 60}\s*m", rf"{hours * 3600}\s*s?\s*[:=]"]
    if hours % 24 == 0:
        forms.append(rf"{hours // 24}\s*d")
    return "|".join(forms)


def _ascending_ages() -> str:
    """A lookahead: every band's age is a whole hour up to 7 days, each later than the one before.

    The syntax is checked by the rest of the pattern; here each band is skipped after its age (``[^,]*``)."""
    chain = "".join(rf"(?:0*(?:{_spellings(hours)})[^,]*{_SEPARATOR})?" for hours in AGE_HOURS)
    return rf"(?={_SEPARATOR}{chain}$)"


def allowed_pattern() -> str:
    """The whole ``AllowedPattern``: ordered ages, then the first band every run and the others not."""
    first, later = _band(_ZERO), _band(_NONZERO)
    return rf"^{_ascending_ages()}{_SEPARATOR}{first}(?:,{_SEPARATOR}{later})*{_SEPARATOR}$"


def template_pattern(text: str) -> str:
    match = _LINE.search(text)
    if match is None:
        raise ValueError("template.yaml has no FollowUpCadence AllowedPattern line")
    return match.group(2)


def synced(text: str) -> str:
    """``text`` with the pattern line regenerated (a plain YAML scalar: no ``: `` or ``#`` in it)."""
    return _LINE.sub(lambda match: match.group(1) + allowed_pattern(), text, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write FollowUpCadence's AllowedPattern into template.yaml.")
    parser.add_argument("template", nargs="?", type=Path, default=TEMPLATE)
    parser.add_argument("--check", action="store_true", help="exit 1 if the template is out of date")
    args = parser.parse_args(argv)
    text = args.template.read_text(encoding="utf-8")
    updated = synced(text)
    if args.check:
        if updated != text:
            print(f"{args.template}: FollowUpCadence pattern out of date", file=sys.stderr)
            return 1
        return 0
    args.template.write_text(updated, encoding="utf-8")
    print(f"{args.template}: FollowUpCadence pattern written ({len(allowed_pattern())} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
