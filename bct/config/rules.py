"""What a config value may be, beyond its type: ranges, choices, list items.

bct/config/defaults.py declares one rule per key, on the line after the key's default
(``RULES["TRAIN.EPOCHS"] = at_least(1)``); the loader checks every key against its rule once all
overrides are merged. A rule is a predicate plus the words that tell the user what is allowed.
"""
import math

__all__ = ["Rule", "at_least", "above", "between", "one_of", "each", "either", "FLAG", "FREE", "NONEMPTY"]


class Rule:
    """``ok(value)`` says whether a value is allowed; ``expected`` says what is allowed, in words."""

    def __init__(self, ok, expected: str, choices: tuple = None):
        self.ok = ok
        self.expected = expected
        self.choices = choices

    def __repr__(self) -> str:
        return f"Rule({self.expected})"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(lo, hi) -> str:
    return "an integer" if all(isinstance(b, int) for b in (lo, hi) if b is not None) else "a number"


def _numeric(test, kind: str, expected: str) -> Rule:
    wants_int = kind == "an integer"
    return Rule(lambda v: _is_number(v) and (not wants_int or isinstance(v, int)) and test(v), expected)


def at_least(lo) -> Rule:
    """lo <= value; an integer rule when lo is an int."""
    kind = _kind(lo, None)
    return _numeric(lambda v: v >= lo, kind, f"{kind} >= {lo}")


def above(lo) -> Rule:
    """lo < value (a finite number)."""
    return _numeric(lambda v: v > lo, "a number", f"a number > {lo}")


def between(lo, hi, lo_open: bool = False, hi_open: bool = False) -> Rule:
    """A number in [lo, hi], either end open on request."""
    kind = _kind(lo, hi)
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"

    def test(v):
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return _numeric(test, kind, f"{kind} in {left}{lo}, {hi}{right}")


def one_of(*choices) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(str(c) for c in choices), choices)


def each(item: Rule, increasing: bool = False) -> Rule:
    """A list whose every item satisfies ``item`` (strictly increasing on request)."""

    def test(values):
        if not all(item.ok(v) for v in values):
            return False
        return not increasing or all(a < b for a, b in zip(values, values[1:]))
    order = ", strictly increasing" if increasing else ""
    return Rule(test, f"a list, each item {item.expected}{order}")


def either(first: Rule, second: Rule, second_words: str) -> Rule:
    """A value that satisfies ``first`` or ``second`` (``second_words`` says the latter)."""
    return Rule(lambda v: first.ok(v) or second.ok(v), f"{first.expected} ({second_words})")


# True or False; the type check already guarantees it.
FLAG = Rule(lambda v: isinstance(v, bool), "True or False")
# Any value of the key's type: paths, names and other free text (checked where they are used).
FREE = Rule(lambda v: True, "any value")
# Any text but the empty string.
NONEMPTY = Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty text")
