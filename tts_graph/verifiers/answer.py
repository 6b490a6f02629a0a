r"""Final-answer extraction and normalisation.

:func:`extract_answer` pulls the final answer out of a model's reply; :func:`normalize_answer` turns
it into a key for voting (so ``"12"``, ``"12.0"`` and ``"$12$"`` count as one answer). Both are
plain functions: a verifier or a selection node takes any :class:`AnswerExtractor`, and
:func:`chain_extractors` / :class:`RegexExtractor` build custom ones.

>>> extract_answer(r"7 + 5 = 12, so the answer is $\boxed{12}$.")
'12'
>>> normalize_answer("$12.0$.")
'12'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Protocol

__all__ = [
    "AnswerExtractor",
    "RegexExtractor",
    "canonical_number",
    "chain_extractors",
    "extract_answer",
    "extract_answer_line",
    "extract_boxed",
    "extract_final_answer_line",
    "extract_last_number",
    "extract_the_answer_is",
    "normalize_answer",
    "parse_number",
]


class AnswerExtractor(Protocol):
    """Anything that maps a reply to its final answer, or None when it has none.

    >>> def first_word(text: str) -> str | None:
    ...     return text.split()[0] if text.split() else None
    >>> extractor: AnswerExtractor = first_word
    """

    def __call__(self, text: str, /) -> str | None: ...


# Sentence end inside an answer line: a period followed by a space or the end ("3.5" is kept whole).
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_ENCLOSING = (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


_EQUALS = re.compile(r"(?<![<>!=\\])=(?!=)")


def _clean(answer: str) -> str | None:
    """Trim an answer taken from a line: first sentence, no markdown emphasis, no math
    delimiters, and of an equation only its right-hand side ("12+19 = 31" -> "31")."""
    answer = _SENTENCE_END.split(answer, maxsplit=1)[0].strip().strip("*").strip()
    for left, right in _ENCLOSING:
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left + right):
            answer = answer[len(left) : -len(right)].strip()
            if left == "$":  # display math: $$...$$
                answer = answer.strip("$").strip()
    rhs = _EQUALS.split(answer)[-1].strip()
    if rhs:
        answer = rhs
    answer = answer.rstrip(".").strip()
    return answer or None


@dataclass(frozen=True)
class RegexExtractor:
    """Extracts the last match of ``pattern`` (its ``group``), cleaned like an answer line.

    >>> RegexExtractor(r"ANSWER=(\\S+)")("ANSWER=3 then ANSWER=4.")
    '4'
    """

    pattern: str | re.Pattern[str]
    group: int | str = 1
    flags: int = re.IGNORECASE
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = self.pattern  # flags apply to a string pattern; a compiled one keeps its own
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, self.flags)
        object.__setattr__(self, "_compiled", compiled)

    def __call__(self, text: str, /) -> str | None:
        # Overlapping matches, so "Final Answer: The final answer is 12" yields the inner "12".
        matches: list[re.Match[str]] = []
        while match := self._compiled.search(text, matches[-1].start() + 1 if matches else 0):
            matches.append(match)
        for match in reversed(matches):
            answer = _clean(match.group(self.group) or "")
            if answer is not None:
                return answer
        return None


def chain_extractors(*extractors: AnswerExtractor) -> AnswerExtractor:
    """An extractor that returns the first non-None answer of ``extractors``, tried in order.

    >>> pick = chain_extractors(RegexExtractor(r"choice:\\s*(\\w)"), extract_last_number)
    >>> pick("choice: B"), pick("I think 42")
    ('B', '42')
    """

    def chained(text: str, /) -> str | None:
        for extractor in extractors:
            answer = extractor(text)
            if answer is not None:
                return answer
        return None

    return chained


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str) -> str | None:
    r"""The content of the last non-empty ``\boxed{...}`` (or ``\fbox``); nested braces are fine.

    >>> print(extract_boxed(r"first \boxed{1}, then \boxed{\frac{1}{2}}"))
    \frac{1}{2}
    """
    found: str | None = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found = text[start:i].strip() or found
                    break
    return found


_FINAL_ANSWER = RegexExtractor(
    r"final\s+answer[*_]*(?:\s+is\b|\s*[:\uff1a]|[ \t]*\n)[\s*_:]*(?P<a>[^\n]+)", group="a"
)
_THE_ANSWER_IS = RegexExtractor(r"\banswer\s+is\b[\s*_:]*(?P<a>[^\n]+)", group="a")
_ANSWER_LINE = RegexExtractor(r"\banswer[*_]*\s*[:\uff1a][\s*_]*(?P<a>[^\n]+)", group="a")


def extract_final_answer_line(text: str) -> str | None:
    """Text after the last "Final Answer:" / "final answer is" / "Final Answer" heading.

    >>> extract_final_answer_line("Final Answer: The final answer is 12. I hope it is correct.")
    '12'
    """
    return _FINAL_ANSWER(text)


def extract_the_answer_is(text: str) -> str | None:
    """Text after the last "the answer is", up to the end of its sentence.

    >>> extract_the_answer_is("So the answer is -3.5. Done.")
    '-3.5'
    """
    return _THE_ANSWER_IS(text)


def extract_answer_line(text: str) -> str | None:
    """Text after the last "Answer:" (markdown emphasis allowed).

    >>> extract_answer_line("**Answer:** 7")
    '7'
    """
    return _ANSWER_LINE(text)


# A number as written: optional minus (not after a word, so "x-5" gives "5"), thousands separators
# only in groups of three, optional decimals and exponent, or an integer fraction like "3/4".
_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d+/\d+(?!\d|\.\d)"
    r"|(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
    r"|\.\d+)"
)


def extract_last_number(text: str) -> str | None:
    """The last number in ``text``, as written (``"1,234"``, ``"-0.5"``, ``"3/4"``, ``"2e-3"``).

    >>> extract_last_number("We need 1,234 apples at 3/4 each")
    '3/4'
    """
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


_DEFAULT_CHAIN = chain_extractors(
    extract_boxed,
    extract_final_answer_line,
    extract_the_answer_is,
    extract_answer_line,
    extract_last_number,
)


def extract_answer(text: str) -> str | None:
    r"""The final answer of a reply, or None. Tried in this order, the first that finds one wins:

    1. the last ``\boxed{...}`` (balanced braces);
    2. the last "Final Answer:" line (also "final answer is", a "Final Answer" heading);
    3. the last "The answer is ...";
    4. the last "Answer:" line;
    5. the last number in the text (integers, decimals, negatives, ``3/4``, ``1,234``).

    Line answers are cut at the end of their sentence and lose ``$...$`` and ``**``.
    The order is by strength of signal, not position: an "Answer:" line written after a
    ``\boxed{}`` still loses to it.

    >>> extract_answer(r"Answer: 5. Hmm, actually \boxed{6}")
    '6'
    >>> extract_answer("7 + 5 = 12")
    '12'
    """
    return _DEFAULT_CHAIN(text)


_NUMERIC = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def canonical_number(text: str) -> str | None:
    """The canonical spelling of a plain number, or None when ``text`` is not one.

    Thousands separators go, trailing zeros go, an exponent is written out:

    >>> canonical_number("1,234.50"), canonical_number("-0.0"), canonical_number("1.5e3")
    ('1234.5', '0', '1500')
    >>> canonical_number("1,2") is None
    True
    """
    text = text.strip()
    if not _NUMERIC.fullmatch(text):
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        return None
    if abs(value.adjusted()) > 100:  # keep 1e400 short instead of writing 400 digits
        return str(value.normalize())
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\{(.*)\}", re.DOTALL)
_INT_FRAC = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}")
_REMOVE = re.compile(r"\\left|\\right|\\[,;:! ]|\^\{?\\circ\}?|\\\$")


def normalize_answer(ans: str) -> str:
    r"""A key for voting: answers that are written differently but read the same get one key.

    Strips whitespace, a surrounding ``\boxed{}``/``$...$``/``\text{}``, a trailing period,
    ``\left``/``\right``, spacing commands, degree marks and ``\$``; writes ``\dfrac`` and
    ``\tfrac`` as ``\frac`` and ``\frac{3}{4}`` as ``3/4``; removes all spaces; writes plain
    numbers canonically (see :func:`canonical_number`). Case is kept (``X`` and ``x`` differ).

    >>> [normalize_answer(a) for a in ["12", " 12.00 ", "$12$.", r"\text{12}", "1,234"]]
    ['12', '12', '12', '12', '1234']
    >>> normalize_answer(r"\dfrac{1}{2}"), normalize_answer("0.50")
    ('1/2', '0.5')
    """
    s = ans.strip()
    boxed = extract_boxed(s)
    if boxed is not None and s.startswith(("\\boxed", "\\fbox")) and s.endswith("}"):
        s = boxed
    s = _clean(s) or ""
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _REMOVE.sub("", s).strip()
    if (wrapped := _TEXT_WRAPPER.fullmatch(s)) is not None:
        s = wrapped.group(1)
    s = re.sub(r"\s+", "", s).rstrip(".")
    # Only a whole fraction: inside an expression "1/2x" would read as 1/(2x).
    s = _INT_FRAC.sub(r"\1\2/\3", s) if _INT_FRAC.fullmatch(s) else s
    return canonical_number(s) or s


def parse_number(ans: str) -> Fraction | None:
    r"""The exact value of a numeric answer, or None when it is not a number.

    Accepts what :func:`normalize_answer` accepts plus integer fractions (``3/4``,
    ``\frac{3}{4}``), a leading ``x =`` (the right-hand side is read) and a trailing ``%``
    (dropped: ``"50%"`` reads as 50, as "what percent" questions expect).

    >>> parse_number(r"x = \frac{3}{4}"), parse_number("1,234"), parse_number("seven")
    (Fraction(3, 4), Fraction(1234, 1), None)
    """
    s = re.sub(r"\\?%$", "", normalize_answer(ans.rsplit("=", 1)[-1]))
    number = canonical_number(s)
    if number is not None:
        return Fraction(Decimal(number))
    numerator, slash, denominator = s.partition("/")
    if slash and (n := canonical_number(numerator)) and (d := canonical_number(denominator)):
        try:
            return Fraction(Decimal(n)) / Fraction(Decimal(d))
        except ZeroDivisionError:
            return None
    return None
