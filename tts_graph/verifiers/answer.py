r"""Final-answer extraction and normalisation.

:func:`extract_answer` pulls the final answer out of a model's reply; :func:`normalize_answer` turns
it into a key for voting (so ``"12"``, ``"12.0"`` and ``"$12$"`` count as one answer). Both are
plain functions: a verifier or a selection node takes any :class:`AnswerExtractor`, and
:func:`chain_extractors` / :class:`RegexExtractor` build custom ones. Extractors also have names
(:func:`get_extractor`, :func:`register_extractor`), so a spec or a task can pick one by name.

The default extractor prefers what the reply marks as its answer (``\boxed{}``, "Answer:", "the
answer is"), then reads the reply's final statement ("... is X", a closing "= X", "there are N
..."), and returns the whole expression it states, not its last number. A reply that states no
answer gets None, never a guess.

>>> extract_answer(r"7 + 5 = 12, so the answer is $\boxed{12}$.")
'12'
>>> extract_answer("The number of ways to tile a 2 x 21 board is 17,711.")
'17,711'
>>> print(extract_answer("The expression 5^125 - 1 is not a prime number."))
None
>>> normalize_answer("$12.0$.")
'12'
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Protocol, overload

from tts_graph.errors import ConfigError

__all__ = [
    "DEFAULT_EXTRACTOR",
    "AnswerExtractor",
    "RegexExtractor",
    "available_extractors",
    "canonical_number",
    "chain_extractors",
    "extract_answer",
    "extract_answer_line",
    "extract_boxed",
    "extract_final_answer_line",
    "extract_final_statement",
    "extract_last_number",
    "extract_marked_answer",
    "extract_program",
    "extract_the_answer_is",
    "extract_yes_no",
    "get_extractor",
    "normalize_answer",
    "parse_number",
    "register_extractor",
    "resolve_extractor",
]


class AnswerExtractor(Protocol):
    """Anything that maps a reply to its final answer, or None when it has none.

    >>> def first_word(text: str) -> str | None:
    ...     return text.split()[0] if text.split() else None
    >>> extractor: AnswerExtractor = first_word
    """

    def __call__(self, text: str, /) -> str | None: ...


# ---------------------------------------------------------------------------------------------
# Reading structure: what is at the top level of a sentence, outside brackets and math.

_MATH_OPEN = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_OPENERS = ("\\{", "(", "[", "{")
_CLOSERS = ("\\}", ")", "]", "}")
_HIDDEN = "\0"


# What can change the nesting: an escaped character (one token, so `\$` opens no math and
# `\{` is a bracket), "$$", "$" and the brackets themselves.
_MASK_TOKEN = re.compile(r"\\.|\$\$|[$()\[\]{}]", re.DOTALL)


@functools.lru_cache(maxsize=4096)  # one reply is masked many times, in pieces and whole
def _mask(text: str, *, math: bool) -> str:
    r"""``text`` with everything inside brackets (and with ``math``, inside ``$...$``, ``\(...\)``,
    ``\[...\]``) replaced by NULs: same length, so a match in the mask is a match in ``text``
    that sits at the top level. Brackets of any kind pair with each other, which keeps
    half-open intervals such as ``(-\infty, 2]`` whole."""
    out: list[str] = []
    depth, closer, last = 0, "", 0
    for match in _MASK_TOKEN.finditer(text):
        hidden = bool(depth or closer)
        out.append(_HIDDEN * (match.start() - last) if hidden else text[last : match.start()])
        token, last = match.group(), match.end()
        if math and not hidden and token in _MATH_OPEN:
            closer = _MATH_OPEN[token]
            out.append(token)
        elif closer and not depth and token in (closer, "$$" if closer == "$" else closer):
            closer = (
                "$" if token == "$$" and closer == "$" else ""
            )  # "$a$$b$": one closes, one opens
            out.append(token)
        else:
            if token in _OPENERS:
                depth += 1
            elif token in _CLOSERS and depth:
                depth -= 1
                hidden = bool(depth or closer)
            out.append(_HIDDEN * len(token) if hidden else token)
    out.append(_HIDDEN * (len(text) - last) if depth or closer else text[last:])
    return "".join(out)


_UNICODE_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2012": "-", "\ufe63": "-"})


def _prepare(text: str) -> str:
    # A typeset minus (U+2212) or an en dash between operands is a minus sign; read as anything
    # else, "−5" would lose its sign.
    return text.translate(_UNICODE_MINUS).replace("\u00a0", " ")


_NEXT_CHAR = re.compile(r"\s*(\S)")


def _next_is_lower(text: str, start: int) -> bool:
    """Whether the first non-space character from ``start`` on exists and is not upper case
    (found without copying the rest of ``text``, which done at every "!" is quadratic)."""
    match = _NEXT_CHAR.match(text, start)
    return match is not None and not match.group(1).isupper()


def _sentences(text: str) -> list[str]:
    """Split at sentence ends and line breaks that sit outside math and brackets; an ellipsis,
    a decimal point, "i.e."/"e.g." and a factorial's "!" do not end a sentence."""
    masked = _mask(text, math=True)
    pieces: list[str] = []
    start = 0
    for i, char in enumerate(masked):
        end = False
        if char == "\n":
            end = True
        elif char in ".?!" and (i + 1 == len(masked) or masked[i + 1].isspace()):
            before = masked[max(0, i - 3) : i]
            ellipsis = before.endswith("..") or before.lower() in {"i.e", "e.g", "etc"}
            # "n! / 4!" is a factorial; an exclamation ends with a word and starts a sentence.
            factorial = char == "!" and (
                not (i and masked[i - 1].isalpha()) or _next_is_lower(masked, i + 1)
            )
            end = not (char == "." and ellipsis) and not (char == "!" and factorial)
        if end:
            pieces.append(text[start : i + (char != "\n")])
            start = i + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def _strip_delimiters(text: str) -> str:
    r"""Drop math delimiters (``$``, ``\(``, ``\)``, ``\[``, ``\]``) but keep an escaped ``\$``."""
    text = re.sub(r"(?<!\\)\$+", " ", text)
    text = re.sub(r"\\[()\[\]]", " ", text)
    return re.sub(r"[ \t]+", " ", text).strip()


def _split_top(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split ``text`` at matches of ``pattern`` that are outside brackets."""
    masked = _mask(text, math=False)
    parts, start = [], 0
    for match in pattern.finditer(masked):
        parts.append(text[start : match.start()])
        start = match.end()
    parts.append(text[start:])
    return parts


# ---------------------------------------------------------------------------------------------
# Telling mathematics from prose, token by token.

# fmt: off
_FUNCTIONS = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
    "tanh", "log", "ln", "lg", "exp", "sqrt", "lim", "max", "min", "gcd", "lcm", "mod", "floor",
    "ceil", "det", "deg", "binom", "choose"
})
# fmt: on
# Two-letter words that are English, not a product of two variables ("nx", "ab").
# fmt: off
_SHORT_WORDS = frozenset({
    "am", "an", "as", "at", "be", "by", "do", "go", "he", "if", "in", "is", "it", "me", "my",
    "no", "of", "on", "or", "so", "to", "up", "us", "we"
})
# fmt: on
_MATH_CHARS = frozenset("0123456789+-*/^=<>≤≥≠±∓√∞πφθλμσ∑∏∫!|_()[]{}\\'·×÷≡∈∪∩⊂≈…")
# fmt: off
_NUMBER_WORDS = {word: str(value) for value, word in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty"
))}
# fmt: on


def _is_math_token(token: str) -> bool:
    token = token.strip(",;")
    if token.strip("*") in ("...", "…"):  # an ellipsis continues a list or a product
        return True
    # Markdown emphasis ("**12**") is not multiplication, but a lone "*" is.
    token = token.strip(".:").strip("*") or token.strip(".:")
    if not token:
        return False
    if any(c in _MATH_CHARS for c in token):
        return True
    if not token.isalpha():
        return False
    lower = token.lower()
    if len(token) == 1 or lower in _FUNCTIONS:
        return True
    return len(token) == 2 and lower not in _SHORT_WORDS


# Words that make a phrase a relation or a description rather than a value: "is not prime",
# "is greater than 2", "is divisible by 3", "are all multiples of 9", "is any integer".
# fmt: off
_NOT_A_VALUE = frozenset({
    "not", "no", "never", "none", "neither", "nor", "cannot", "can't", "isn't", "aren't",
    "greater", "less", "smaller", "larger", "bigger", "more", "fewer", "than", "divisible",
    "divides", "factor", "factors", "multiple", "multiples", "divisor", "divisors", "all",
    "any", "every", "each", "some", "whether", "least", "most", "power", "powers", "in",
    "within", "between", "inside", "outside"
})
# fmt: on
# A value may be followed by a qualifier introduced by one of these ("5 with multiplicity 2").
_QUALIFIERS = frozenset(["with", "in", "at", "on", "over", "under", "per", "after", "before"])


@dataclass(frozen=True)
class _Item:
    words: tuple[str, ...]
    math: str


def _read_item(item: str, *, first: bool, last: bool) -> _Item | None:
    """Read one list item as leading words (``first`` only), then mathematics, then (``last``
    only) a qualifier. None when it is prose, or when words follow the mathematics ("8 integer
    values")."""
    masked = _mask(item, math=False)
    spans = [(m.start(), m.end()) for m in re.finditer(r"[^ \t]+", masked)]
    tokens = [item[a:b] for a, b in spans]

    def is_word(k: int) -> bool:
        # "a"/"an" before prose is an article; before "= 0" it is a variable.
        if tokens[k].lower() in ("a", "an") and k + 1 < len(tokens):
            return not _is_math_token(tokens[k + 1])
        return not _is_math_token(tokens[k])

    k = 0
    while first and k < len(tokens) and is_word(k):
        k += 1
    end = k
    while end < len(tokens) and not is_word(end):
        end += 1
    if end == k:
        return None
    if end < len(tokens) and not (last and tokens[end].lower() in _QUALIFIERS):
        return None
    words = tuple(t.lower().strip(",;:*") for t in tokens[:k])
    return _Item(words, item[spans[k][0] : spans[end - 1][1]].strip(" ,;:*"))


_LIST_SEPARATOR = re.compile(r",\s*(?:and|or)\s+|,\s+|;\s+|\s+(?:and|or)\s+|,$")
_EQUALS = re.compile(r"(?<![<>!=\\:])=(?!=)")


def _rhs(expression: str) -> tuple[str, str] | None:
    """(left, right) of an equation at the top level, or None; "x = y = 3" gives ("x", "3")."""
    parts = _split_top(expression, _EQUALS)
    if len(parts) < 2 or not parts[-1].strip() or not parts[0].strip():
        return None
    return re.sub(r"\s+", "", parts[0]), parts[-1].strip()


def _resolve_equations(items: list[str]) -> list[str]:
    """Equations sharing one left-hand side give their right-hand sides ("x = 1 and x = 2" ->
    1, 2); equations for different unknowns are kept whole ("a = 3, b = -4")."""
    sides = [_rhs(item) for item in items]
    lefts = {side[0] for side in sides if side is not None}
    if len(lefts) > 1:
        return items
    return [side[1] if side is not None else item for item, side in zip(items, sides, strict=True)]


def _value(phrase: str, *, prose: bool) -> str | None:
    """The value a phrase states, or None. ``prose`` allows leading words ("the person with number
    657", "given by X") as long as they do not make the phrase a relation or a description, and
    a trailing qualifier ("5 with multiplicity 2"); without it the phrase must be all
    mathematics."""
    phrase = _strip_delimiters(phrase).strip(" ;:*").rstrip(" .")
    if not phrase:
        return None
    raw_items = [p.strip() for p in _split_top(phrase, _LIST_SEPARATOR)]
    raw_items = [p for p in raw_items if p]
    if not raw_items:
        return None
    items: list[_Item] = []
    for i, raw in enumerate(raw_items):
        item = _read_item(raw, first=i == 0, last=prose and i == len(raw_items) - 1)
        if item is None:
            return None
        items.append(item)
    words = items[0].words
    if words and not prose:
        return None
    if any(w in _NOT_A_VALUE for w in words) or any(
        w in ("that", "which", "who") for w in words[1:]
    ):
        return None
    if len(items) > 1 and words and words[-1] == "of":  # "the sum of 2, 3 and 4" is one value
        return None
    values = _resolve_equations([item.math for item in items])
    if len(values) == 1 and values[0].lower() in _NUMBER_WORDS:
        return _NUMBER_WORDS[values[0].lower()]
    return ", ".join(values)


# ---------------------------------------------------------------------------------------------
# Answers a reply marks explicitly.

# Clauses after a value that give its reason or its conditions, not the value itself.
_REASON = re.compile(
    r"(?:,\s*|\s+)(?:because|since|where|wherein|which|when|whenever|if|iff|unless|depending|"
    r"achieved|attained|obtained|occurring|occurs|provided|considering|for|as\s+(?:long|shown|"
    r"seen|required|expected|desired|[a-z])|so\s+that|such\s+that|while|whereas|assuming|"
    r"i\.e\.|e\.g\.|given\s+that|which\s+is)\b"
    r"|,\s*(?:given|as|so|but|thus|hence|therefore|then|and\s+(?:so|thus|hence|therefore))\b"
    r"|\s+--\s+|\s*—\s*"
)


# A reason in brackets: "5 (because 25 has 3 divisors)".
_BRACKETED_REASON = re.compile(
    r"\s*\((?=\s*(?:because|since|as|which|where|when|for\s+example|i\.e\.|e\.g\.)\b)", re.I
)


def _cut_reason(phrase: str) -> str:
    masked = _mask(phrase, math=True)
    cuts = [m.start() for m in (_REASON.search(masked), _BRACKETED_REASON.search(phrase)) if m]
    cuts = [c for c in cuts if masked[c:].lstrip()[:1] != _HIDDEN]
    return phrase[: min(cuts)] if cuts else phrase


# An answer that is a plain number and nothing else: most answers are, and there is nothing
# to trim (reading sentences, reasons and lists costs tens of microseconds per answer).
_PLAIN_NUMBER = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*")


def _clean(answer: str) -> str | None:
    """Trim an answer taken after a marker: its first sentence, without a trailing reason ("0
    because ..."), markdown emphasis or math delimiters; a list is written "a, b"; of an equation
    only its right-hand side ("12+19 = 31" -> "31")."""
    answer = _prepare(answer)
    if (plain := _PLAIN_NUMBER.fullmatch(answer)) is not None:
        return plain.group(1)
    sentences = _sentences(answer)
    answer = sentences[0] if sentences else ""
    answer = answer.strip().strip("*").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left + right):
            inner = answer[len(left) : -len(right)]
            if _mask(inner, math=True).count("$") == 0:  # "$1$ and $2$" is two pieces of math
                answer = inner.strip()
                break
    answer = _cut_reason(answer).strip().rstrip(".").strip()
    if not answer:
        return None
    listed = _value(answer, prose=False)
    if listed is not None:
        return listed
    side = _rhs(answer)
    if side is not None and not re.search(r"[A-Za-z]{3,}", side[1]):
        answer = side[1]
    answer = _strip_delimiters(answer) if "$" in answer else answer
    return answer.rstrip(".").strip() or None


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
_BRACE = re.compile(r"[{}]")
_NON_SPACE = re.compile(r"\S")
# What may stand between boxes that list one answer: "\boxed{2} and \boxed{3}", "$\boxed{6}$ or
# $\boxed{5}$". Anything else ("first \boxed{1}, then \boxed{2}") means a later box replaces it.
_BETWEEN_LISTED_BOXES = re.compile(
    r"[\s$,;]*(?:(?:\\text\{\s*)?(?:and|or)(?:\s*\})?)?[\s$,;]*(?:[A-Za-z]\w*\s*=\s*)?",
    re.IGNORECASE,
)


def _closing_braces(text: str) -> dict[int, int]:
    """The position of the ``}`` that closes each ``{`` that is closed, found in one pass: a
    reply may open thousands of boxes, and scanning to the end from each one is quadratic."""
    closing: dict[int, int] = {}
    opened: list[int] = []
    for match in _BRACE.finditer(text):
        if match.group() == "{":
            opened.append(match.start())
        elif opened:
            closing[opened.pop()] = match.start()
    return closing


def extract_boxed(text: str) -> str | None:
    r"""The content of the last non-empty ``\boxed{...}`` (or ``\fbox``); nested braces are fine.

    Boxes written as one list (``\boxed{2} and \boxed{3}``, ``\boxed{6} or \boxed{5}``) give
    all of them, ``"2, 3"``: a hedge between two answers is not a vote for the last one.

    >>> print(extract_boxed(r"first \boxed{1}, then \boxed{\frac{1}{2}}"))
    \frac{1}{2}
    >>> extract_boxed(r"x is $\boxed{6}$ or $\boxed{5}$.")
    '6, 5'
    """
    boxes: list[tuple[int, int, int]] = []  # (box start, box end, content start)
    closing = _closing_braces(text) if "\\" in text else {}
    for match in _BOXED.finditer(text):
        start = match.end()
        end = closing.get(start - 1)
        # Boxes nested thousands deep must not each copy their content: only the chosen do.
        if end is not None and _NON_SPACE.search(text, start, end):
            boxes.append((match.start(), end + 1, start))
    if not boxes:
        return None
    listed = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if box[1] > listed[0][0] or not _BETWEEN_LISTED_BOXES.fullmatch(
            text[box[1] : listed[0][0]]
        ):
            break
        listed.insert(0, box)
    return ", ".join(text[start : end - 1].strip() for _, end, start in listed)


_FINAL_ANSWER = RegexExtractor(
    r"final\s+answer[*_]*(?:\s+is\b|\s*[:\uff1a]|[ \t]*\n)[\s*_:]*(?P<a>[^\n]+)", group="a"
)
_THE_ANSWER_IS = RegexExtractor(r"\banswer\s+is\b[\s*_:]*(?P<a>[^\n]+)", group="a")
_ANSWER_LINE = RegexExtractor(r"\banswer[*_]*\s*[:\uff1a][\s*_]*(?P<a>[^\n]+)", group="a")
_NEGATED = re.compile(r"(?:not|cannot|can't|unknown|unclear|undefined|undetermined)\b", re.I)


def _unless_negated(answer: str | None) -> str | None:
    # "The answer is not determined" states no answer.
    return None if answer is None or _NEGATED.match(answer) else answer


def extract_final_answer_line(text: str) -> str | None:
    """Text after the last "Final Answer:" / "final answer is" / "Final Answer" heading.

    >>> extract_final_answer_line("Final Answer: The final answer is 12. I hope it is correct.")
    '12'
    """
    return _unless_negated(_FINAL_ANSWER(text))


def extract_the_answer_is(text: str) -> str | None:
    """Text after the last "the answer is", up to the end of its sentence or a reason.

    >>> extract_the_answer_is("So the answer is -3.5. Done.")
    '-3.5'
    >>> extract_the_answer_is("The answer is 0 because 7 is prime.")
    '0'
    """
    return _unless_negated(_THE_ANSWER_IS(text))


def extract_answer_line(text: str) -> str | None:
    """Text after the last "Answer:" (markdown emphasis allowed).

    >>> extract_answer_line("**Answer:** 7")
    '7'
    """
    return _unless_negated(_ANSWER_LINE(text))


_MARKED = chain_extractors(
    extract_boxed, extract_final_answer_line, extract_the_answer_is, extract_answer_line
)


def extract_marked_answer(text: str) -> str | None:
    r"""Only what the reply marks as its answer: ``\boxed{}``, then "Final Answer:", then "the
    answer is", then "Answer:"; None for a reply without such a marker.

    >>> extract_marked_answer("Answer: 12"), extract_marked_answer("7 + 5 = 12")
    ('12', None)
    """
    return _MARKED(text)


_YES_NO = re.compile(r"[\s*_#>]*(yes|no)\b(?=[*_]*\s*(?:[,.!;:—-]|$))", re.IGNORECASE)


def extract_yes_no(text: str) -> str | None:
    """``"Yes"`` or ``"No"`` when the reply opens with that word as its answer, else None.

    >>> extract_yes_no("No, there is no such integer."), extract_yes_no("No problem: it is 5.")
    ('No', None)
    """
    match = _YES_NO.match(text)
    return match.group(1).capitalize() if match else None


# ---------------------------------------------------------------------------------------------
# The final statement of a reply that marks no answer.

_COPULA = re.compile(
    r"\b(?:is|are|was|were|be|equals|becomes?|remains?|gives|yields|get|gets|obtain|"
    r"if\s+and\s+only\s+if|iff)\b",
    re.IGNORECASE,
)

# Where "there"/"here" and a negation end (with the spaces after them): a copula starting
# there is existential ("there is") or negated ("is not"). Found once per sentence: searching
# all the text before each copula would be quadratic in a long one.
_EXISTENTIAL = re.compile(r"\b(?:there|here)\s*", re.IGNORECASE)
_NEGATION_BEFORE = re.compile(r"\b(?:not|cannot|never|can't|won't|couldn't)\s*", re.IGNORECASE)
_NEGATED_AFTER = re.compile(r"\s*" + _NEGATED.pattern, re.IGNORECASE)
# A sentence's answer is in one of its last predicates; a runaway reply ("x is x is x is ...")
# may have thousands, and reading each to the end of the sentence would be quadratic.
_MAX_PREDICATES = 32
# A predicate that opens with one of these is a condition ("are when m is ..."): the copulas
# inside it belong to the condition, not to the answer.
_CONDITION = re.compile(
    r"\s*(?:when|whenever|if|such\s+that|where|whether|in\s+which|for\s+which)\b", re.IGNORECASE
)
_SKIPPED_SENTENCE = re.compile(
    r"(?:for\s+(?:example|instance)|e\.g\.|this\s+is\s+because|because|note\s+that|hint)\b",
    re.IGNORECASE,
)
_CONNECTIVE = re.compile(
    r"^(?:(?:so|thus|hence|therefore|then|finally|and|we\s+get|we\s+have)\b[\s,:]*)+",
    re.IGNORECASE,
)
# A clause that announces the computation it closes with ("we add 7 + 5 = 12", "which gives
# x = 3"): its equation is the result, even after a clause that ends in mathematics.
_COMPUTATION = re.compile(
    r"^(?:(?:so|thus|then|finally|and|now)\s+)?(?:(?:we|I|this|which|that|it)\s+)?"
    r"(?:add|multiply|subtract|divide|sum|compute|calculate|evaluate|simplify|get|gets|give|gives|"
    r"yield|yields|obtain|find)(?:\s+(?:them|these|it|up|together))?\b[\s,:]*",
    re.IGNORECASE,
)
# A value with a condition followed by another ("A for odd n and B for even n", "A if x > 0,
# and B if ...") is a piecewise answer.
# The first "and"/"or" is as good as any later one (a condition after a later one is after the
# first too), so the group is atomic: no backtracking into it, linear in the sentence.
_PIECEWISE = re.compile(
    r"(?:,\s*|\s+)(?:for|if|when|whenever)\b(?>.*?\b(?:and|or)\b)"
    r".*?\b(?:for|if|when|whenever|otherwise)\b",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"[,:;]\s+")
_CLAUSE_END = re.compile(r"[,;:]")


def _predicate_value(sentence: str) -> str | None:
    """The value after the sentence's main copula: "... is X", "... are X and Y"."""
    # A copula is at the top level of ``masked``, so the mask of the text after it is the rest
    # of ``masked``: positions in the sentence serve for both.
    masked = _mask(sentence, math=True)
    existential = {m.end() for m in _EXISTENTIAL.finditer(masked)}
    negation = {m.end() for m in _NEGATION_BEFORE.finditer(masked)}
    copulas: list[re.Match[str]] = []
    for copula in _COPULA.finditer(masked):
        if copula.start() in existential:
            continue
        if copula.start() in negation or _NEGATED_AFTER.match(sentence, copula.end()):
            # "It is not possible ..., such that the sum is 1/5": what follows a negated
            # predicate is under the negation.
            break
        copulas.append(copula)
        if _CONDITION.match(masked, copula.end()):
            copulas.pop()
            break
    values: list[tuple[int, str | None]] = []
    dropped: set[int] = set()
    for copula in copulas[-_MAX_PREDICATES:]:
        value = None
        cut = _REASON.search(masked, copula.end())
        if cut is not None and _PIECEWISE.match(masked, cut.start()):
            continue  # "A for odd n and B for even n" is no single value
        value = _value(sentence[copula.end() : cut.start() if cut else None], prose=True)
        if value is not None and cut is not None:
            # The reason or condition after a value ("is 0, when a equals b") runs to the next
            # comma; the copulas inside it are its own, not the sentence's.
            end = _CLAUSE_END.search(masked, cut.end())
            stop = end.start() if end else len(masked)
            dropped.update(c.start() for c in copulas if cut.end() <= c.start() < stop)
        values.append((copula.start(), value))
    for position, value in reversed(values):
        if value is not None and position not in dropped:
            return value
    return None


def _math_clause(sentence: str, *, need_equation: bool) -> str | None:
    """The whole sentence, or with ``need_equation`` its last clause, when it is pure mathematics
    ("So, 7 + 5 = 12" gives "12"; "..., $(x,y)=(0,0)$" gives "(0,0)")."""
    clause = sentence
    if need_equation:
        masked = _mask(sentence, math=True)
        breaks = list(_CLAUSE_BREAK.finditer(masked))
        if not breaks:
            return None
        before = _strip_delimiters(sentence[: breaks[-1].start()]).split()
        clause = sentence[breaks[-1].end() :]
        computed = _COMPUTATION.match(_strip_delimiters(clause))
        # After a list of equations ("defined by x_1 = 2, x_2 = 5") the last one is restated
        # data; after prose ("has one solution, x = 3") or as a computation ("To find 7+5, we add
        # 7 + 5 = 12") it is the answer.
        if not before or (_is_math_token(before[-1]) and not computed):
            return None
        if computed:
            clause = _strip_delimiters(clause)[computed.end() :]
    clause = _CONNECTIVE.sub("", _strip_delimiters(clause)).strip(" *").rstrip(" .")
    if not clause or (need_equation and _rhs(clause) is None):
        return None
    return _value(clause, prose=False)


_COUNT_NUMBER = (
    r"(?P<n>\$[^$]+\$|\\\(.+?\\\)|"
    + "|".join(_NUMBER_WORDS)
    + r"|\d{1,3}(?:,\d{3})+(?![\d,])|[\w^(){}+\-*/!]*\d[\w^(){}+\-*/!]*)"
)
_DETERMINER = (
    r"(?:only|exactly|precisely|at\s+least|at\s+most|a\s+total\s+of|a\s+(?:minimum|maximum)\s+of|"
    r"all)(?:\s+of)?(?:\s+the)?(?:\s+first)?"
)
_COUNT = re.compile(
    r"\b(?:(?:there\s+(?:is|are|was|were|exists?)|has|have|had)(?:\s+"
    + _DETERMINER
    + r")?|"
    + _DETERMINER
    + r")\s+"
    + _COUNT_NUMBER
    + r"\s+(?!(?:and|or|is|are|was|were|if|when|but)\b)[A-Za-z]",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(?:not|no|never|cannot|none)\b|n't\b", re.IGNORECASE)


def _count_value(sentence: str) -> str | None:
    """N in "there are N ways", "has N solutions", "at least N of", "all N values"; not in a
    negated sentence, where a count is context ("is not prime, with a total of 12 digits")."""
    masked = _mask(sentence, math=False)
    math_masked = _mask(sentence, math=True)
    for match in _COUNT.finditer(sentence):
        if _HIDDEN in masked[match.start() : match.start("n")]:
            continue  # inside brackets
        # Negation counts in the main clause, not in a condition after the count ("There are 21
        # ways when no two dogs share").
        condition = _REASON.search(math_masked, match.end("n"))
        if _NEGATION.search(math_masked[: condition.start() if condition else len(sentence)]):
            return None
        number = _strip_delimiters(match.group("n"))
        return _NUMBER_WORDS.get(number.lower(), number)
    return None


def _statement_value(sentence: str) -> str | None:
    if _SKIPPED_SENTENCE.match(sentence):
        return None
    # A reason clause is no part of the claim: cut it before reading the predicate.
    masked = _mask(sentence, math=True)
    because = re.search(r"(?:,\s*|\s+)(?:because|since)\b", masked, re.IGNORECASE)
    if because:
        sentence = sentence[: because.start()]
    return (
        _math_clause(sentence, need_equation=False)
        or _predicate_value(sentence)
        or _math_clause(sentence, need_equation=True)
        or _count_value(sentence)
    )


def extract_final_statement(text: str) -> str | None:
    r"""The answer stated by the reply's last sentence that states one, read as a whole
    expression. Each sentence, from the last, is tried as:

    1. pure mathematics ("7 + 5 = 12" gives ``12``; "$(x+1)^2$." gives ``(x+1)^2``);
    2. a predicate: "... is X", "... are X, Y and Z" (a list ``X, Y, Z``), "... is given by
       X", "... if and only if k = -3"; of an equation its right-hand side, unless the
       equations name different unknowns (``a = 3, b = -4``);
    3. a closing equation in its last clause ("In this case, n = 7");
    4. a count: "there are N ...", "has N ...", "at least N ...", "all N ...".

    A predicate that is prose, negated ("is not prime"), a relation ("is greater than 2") or a
    description ("any integer") states no value, and reasons ("because ...") and conditions
    ("when ...", "where ...") are cut off. None when no sentence states a value.

    >>> extract_final_statement("There are 21 ways to give 3 cookies to 8 dogs.")
    '21'
    >>> extract_final_statement("The possible values are 25 and 76, depending on n.")
    '25, 76'
    >>> print(extract_final_statement("There is no minimum for 0 < x < 1."))
    None
    """
    for sentence in reversed(_sentences(_prepare(text))):
        value = _statement_value(sentence)
        if value is not None:
            return value
    return None


# A number as written: optional minus (not after a word, so "x-5" gives "5"), thousands separators
# only in groups of three, optional decimals and exponent, or an integer fraction like "3/4".
_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d+/\d+(?!\d|\.\d)"
    r"|(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
    r"|\.\d+)"
)


def extract_last_number(text: str) -> str | None:
    """The last number in ``text``, as written (``"1,234"``, ``"-0.5"``, ``"3/4"``, ``"2e-3"``).

    Not part of :func:`extract_answer`: in prose the last number is as often one restated from
    the question as the answer. Use it (by name, ``"last_number"``) for replies known to end
    with their answer.

    >>> extract_last_number("We need 1,234 apples at 3/4 each")
    '3/4'
    """
    numbers = _NUMBER.findall(_prepare(text))
    return numbers[-1] if numbers else None


_DEFAULT_CHAIN = chain_extractors(extract_marked_answer, extract_yes_no, extract_final_statement)


def extract_answer(text: str) -> str | None:
    r"""The final answer of a reply, or None. Tried in this order, the first that finds one wins:

    1. the last ``\boxed{...}`` (balanced braces; boxes listed with "and"/"or" are all kept);
    2. the last "Final Answer:" line (also "final answer is", a "Final Answer" heading);
    3. the last "The answer is ...";
    4. the last "Answer:" line;
    5. a reply that opens with "Yes," or "No," (``"Yes"``/``"No"``);
    6. the final statement (:func:`extract_final_statement`): "... is X", a closing "= X",
       "there are N ...".

    Answers are whole expressions (``(x+1)^2``, ``10^{10^{10}}``, ``6!``), lists are written
    ``"25, 76"``, a trailing reason ("because ...") is cut and ``$...$`` and ``**`` go.
    The order is by strength of signal, not position: an "Answer:" line written after a
    ``\boxed{}`` still loses to it. Registered as ``"default"`` (see :func:`get_extractor`).

    >>> extract_answer(r"Answer: 5. Hmm, actually \boxed{6}")
    '6'
    >>> extract_answer("7 + 5 = 12")
    '12'
    >>> extract_answer("The remainder is (x+1)^2, which is nonnegative.")
    '(x+1)^2'
    """
    return _DEFAULT_CHAIN(text)


# ---------------------------------------------------------------------------------------------
# Extractors by name.

DEFAULT_EXTRACTOR = "default"
"""The name :func:`get_extractor` gives :func:`extract_answer` under."""


def extract_program(text: str) -> str | None:
    """The program a reply writes, as the answer of a coding task: its last ``python`` block
    (else its last fenced block, else the whole reply; see
    :func:`~tts_graph.verifiers.code.extract_code`), dedented and stripped; None for a reply
    with no code. Registered as ``"code"``: the code verifier's answers are read with it.

    >>> extract_program("Here it is:\\n```python\\ndef inc(x):\\n    return x + 1\\n```\\nIt adds one.")
    'def inc(x):\\n    return x + 1'
    """
    from tts_graph.verifiers.code import extract_code  # the sandbox's module, only when asked

    return textwrap.dedent(extract_code(text)).strip() or None


_EXTRACTORS: dict[str, AnswerExtractor] = {
    DEFAULT_EXTRACTOR: extract_answer,
    "code": extract_program,
    "boxed": extract_boxed,
    "marked": extract_marked_answer,
    "statement": extract_final_statement,
    "yes_no": extract_yes_no,
    "last_number": extract_last_number,
}


def available_extractors() -> list[str]:
    """Names that :func:`get_extractor` accepts, sorted.

    >>> "default" in available_extractors() and "boxed" in available_extractors()
    True
    """
    return sorted(_EXTRACTORS)


def get_extractor(name: str) -> AnswerExtractor:
    """The extractor registered as ``name``; ConfigError listing the valid names otherwise.

    >>> get_extractor("boxed")(r"so \\boxed{7}")
    '7'
    """
    try:
        return _EXTRACTORS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown answer extractor {name!r}; choose one of: {', '.join(available_extractors())}"
        ) from None


@overload
def register_extractor(
    name: str, extractor: None = None, *, replace: bool = False
) -> Callable[[AnswerExtractor], AnswerExtractor]: ...
@overload
def register_extractor(
    name: str, extractor: AnswerExtractor, *, replace: bool = False
) -> AnswerExtractor: ...
def register_extractor(
    name: str, extractor: AnswerExtractor | None = None, *, replace: bool = False
) -> AnswerExtractor | Callable[[AnswerExtractor], AnswerExtractor]:
    """Register ``extractor`` under ``name`` (directly, or as a decorator when it is omitted).

    ``name`` must be an identifier; an existing name needs ``replace=True``.

    >>> @register_extractor("first_word", replace=True)
    ... def first_word(text: str) -> str | None:
    ...     return text.split()[0] if text.split() else None
    >>> get_extractor("first_word")("Paris, of course")
    'Paris,'
    """

    def add(fn: AnswerExtractor) -> AnswerExtractor:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"an extractor name must be an identifier, got {name!r}")
        if not callable(fn):
            raise ConfigError(f"cannot register {fn!r} as an extractor: it is not callable")
        if name in _EXTRACTORS and not replace:
            raise ConfigError(
                f"an extractor named {name!r} is already registered; pass replace=True to override"
            )
        _EXTRACTORS[name] = fn
        return fn

    return add if extractor is None else add(extractor)


def resolve_extractor(
    extractor: AnswerExtractor | str | None, verifier: object = None
) -> AnswerExtractor:
    """An extractor given as itself or by its registered name (as specs and options give it).

    None means the extractor ``verifier`` reads answers with (its ``extractor`` attribute: the
    code verifier reads programs, a math verifier its own extractor), else the default: so what
    a graph votes on is what its verifier checks.

    >>> resolve_extractor("default") is extract_answer, resolve_extractor(extract_boxed) is extract_boxed
    (True, True)
    >>> from tts_graph.verifiers.code import CodeVerifier
    >>> resolve_extractor(None, CodeVerifier()) is extract_program, resolve_extractor(None) is extract_answer
    (True, True)
    """
    if extractor is None:
        extractor = getattr(verifier, "extractor", None) or DEFAULT_EXTRACTOR
    return get_extractor(extractor) if isinstance(extractor, str) else extractor


# ---------------------------------------------------------------------------------------------
# Normalisation.

_SHORT_INTEGER = re.compile(r"[+-]?\d{1,18}")
_NUMERIC = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def canonical_number(text: str) -> str | None:
    """The canonical spelling of a plain number, or None when ``text`` is not one.

    Thousands separators go, trailing zeros go, an exponent is written out:

    >>> canonical_number("1,234.50"), canonical_number("-0.0"), canonical_number("1.5e3")
    ('1234.5', '0', '1500')
    >>> canonical_number("1,2") is None
    True
    """
    text = _prepare(text.strip())
    if _SHORT_INTEGER.fullmatch(text):  # most answers; int() is far cheaper than Decimal
        return str(int(text))
    if not _NUMERIC.fullmatch(text):
        return None
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
        return None
    # normalize() rounds to the context's precision (28 digits by default): with a precision
    # of every digit written, two answers that differ in their 29th digit stay two answers.
    with localcontext(prec=max(28, len(text))):
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
    ``\left``/``\right``, spacing commands, degree marks and ``\$``; reads a typeset minus
    (U+2212) as ``-``; writes ``\dfrac`` and ``\tfrac`` as ``\frac`` and ``\frac{3}{4}`` as
    ``3/4``; writes a list as ``a,b`` (``"25 and 76"`` and ``"25, 76"`` agree); removes all
    spaces; writes plain numbers canonically (see :func:`canonical_number`). Case is kept
    (``X`` and ``x`` differ). Expressions stay whole: ``6!`` and ``10^{10}`` are not ``6`` or
    ``10``.

    >>> [normalize_answer(a) for a in ["12", " 12.00 ", "$12$.", r"\text{12}", "1,234", "−3"]]
    ['12', '12', '12', '12', '1234', '-3']
    >>> normalize_answer(r"\dfrac{1}{2}"), normalize_answer("0.50"), normalize_answer("6!")
    ('1/2', '0.5', '6!')

    An answer of several lines (a program, read by :func:`extract_program`) is not a formula:
    it is kept line by line, with its indentation, less trailing spaces and blank lines.

    >>> normalize_answer("def f(x):  \n\n    return x\n")
    'def f(x):\n    return x'
    """
    if "\n" in ans.strip():
        return "\n".join(
            line.rstrip() for line in textwrap.dedent(ans).splitlines() if line.strip()
        )
    s = _prepare(ans.strip())
    if (number := canonical_number(s)) is not None:  # the common case, with nothing to strip
        return number
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
    (dropped: ``"50%"`` reads as 50, as "what percent" questions expect). An expression is not
    a number, even when it starts with one: ``"6!"`` and ``"10^{10}"`` give None.

    >>> parse_number(r"x = \frac{3}{4}"), parse_number("1,234"), parse_number("seven")
    (Fraction(3, 4), Fraction(1234, 1), None)
    >>> print(parse_number("6!"))
    None
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
