"""Free-text scrubbing: patterns plus known identifiers, no model.

Why no NER library: the machines this runs on download no models or corpora at run time.
``scrubadub`` 2.0.1 (last release 2023) detects e-mails, phones and handles offline, but
its name detection needs TextBlob/NLTK corpora to be downloaded (and it pulls in
scikit-learn, SciPy and NumPy, ~400 MB); ``presidio-analyzer`` needs a spaCy model.
Neither fits. So names are found the only way that works offline and predictably: by
knowing them. The scrubber replaces, case-insensitively and on word boundaries:

- every known name (the record's own identifier fields, every record of the batch, and
  the tenant's directory of people passed in), as a full name with any whitespace
  between its parts, and each part of it of two letters or more (first name, last name,
  each half of a hyphenated name) -> ``[NAME]``;
- every known e-mail and account id -> ``[EMAIL]`` / ``[ID]``;
- e-mail addresses by pattern, including ``a@b.c`` with spaces around ``@`` and the
  obfuscated ``a (at) b (dot) c``, ``a [at] b [dot] c`` and ``a at b dot c`` forms ->
  ``[EMAIL]``;
- phone numbers of 9 to 15 digits (optional ``+``/``00``, separated by spaces, dots,
  dashes or parentheses) -> ``[PHONE]``;
- ``@handles`` -> ``[HANDLE]``.

Limits, honestly: a name nobody told us about (not in any record nor the directory) is
not found; nor are nicknames, misspellings, a name written without its accents
("Jose" for "José"), initials, or phone numbers of fewer than 9 digits. Parts of known
names are scrubbed wherever they stand as words, so a colleague called "Will" or "Rose"
also removes the words "will" and "rose" (over-scrubbing is the safe side). Long runs of
digits (9 or more) are treated as phone numbers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

NAME = "[NAME]"
EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
HANDLE = "[HANDLE]"
ACCOUNT = "[ID]"

_AT = r"(?:\s*@\s*|\s*[(\[{<]\s*at\s*[)\]}>]\s*|\s+at\s+)"
_DOT = r"(?:\.|\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)"
EMAIL_PATTERN = re.compile(
    rf"(?<![\w.+'%-])[\w.+'%-]+{_AT}[\w-]+(?:{_DOT}[\w-]+)*{_DOT}[a-z]{{2,}}(?![\w-])",
    re.IGNORECASE,
)
PHONE_PATTERN = re.compile(r"(?<![\w+])(?:\+|00)?\d(?:[\s().\-]{0,2}\d){8,14}(?!\w)")
HANDLE_PATTERN = re.compile(r"(?<![\w@])@[a-z0-9_][\w.-]*\w", re.IGNORECASE)
# What is left of an e-mail address the patterns above could not parse.
_AT_LEFTOVER = re.compile(r"(?<![\w.+'%-])[\w.+'%-]*@[\w.-]*", re.IGNORECASE)

# Honorifics and suffixes: part of a written name, but identify no one.
_NOT_NAME_PARTS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "sir",
        "dame",
        "jr",
        "sr",
        "ii",
        "iii",
        "iv",
        "phd",
        "md",
    }
)


@dataclass(frozen=True, slots=True)
class Person:
    """One person of the tenant's directory: every value is looked for in free text."""

    name: str | None = None
    email: str | None = None
    account_id: str | None = None
    aliases: tuple[str, ...] = ()


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def name_variants(name: str) -> set[str]:
    """The full name and each part of it that can identify someone (2+ letters)."""
    name = " ".join(_norm(name).split())
    if not name:
        return set()
    variants = {name}
    for token in re.split(r"[\s,]+", name):
        for part in (token, *token.split("-")):
            part = part.strip(".'\u2019")
            if len(part) >= 2 and part.casefold() not in _NOT_NAME_PARTS:
                variants.add(part)
    return variants


def _escape(value: str) -> str:
    """A literal, except that a straight and a typographic apostrophe match each other."""
    return re.sub(r"['\u2019]", "['\u2019]", re.escape(value))


def _alternation(values: Iterable[str], flexible_space: bool) -> str:
    parts = []
    for value in sorted(set(values), key=lambda v: (-len(v), v)):
        if flexible_space:
            parts.append(r"\s+".join(_escape(p) for p in value.split()))
        else:
            parts.append(_escape(value))
    return "|".join(parts)


class Scrubber:
    """Scrubs free text of the given known identifiers and of the patterns above."""

    def __init__(
        self, *, names: Iterable[str] = (), emails: Iterable[str] = (), accounts: Iterable[str] = ()
    ) -> None:
        name_values: set[str] = set()
        for name in names:
            name_values |= name_variants(name)
        email_values = {_norm(e).strip() for e in emails if e and e.strip()}
        account_values = {_norm(a).strip() for a in accounts if a and a.strip()}
        self._known: list[tuple[re.Pattern[str], str]] = []
        for values, placeholder, flexible in (
            (email_values, EMAIL, False),
            (account_values, ACCOUNT, False),
            (name_values, NAME, True),
        ):
            if values:
                pattern = re.compile(
                    rf"(?<!\w)(?:{_alternation(values, flexible)})(?!\w)", re.IGNORECASE
                )
                self._known.append((pattern, placeholder))

    def scrub(self, text: str) -> tuple[str, int]:
        """The scrubbed text and how many replacements were made."""
        text = _norm(text)
        total = 0
        steps: list[tuple[re.Pattern[str], str]] = [
            (EMAIL_PATTERN, EMAIL),
            (HANDLE_PATTERN, HANDLE),
            *self._known,
            (PHONE_PATTERN, PHONE),
            (_AT_LEFTOVER, EMAIL),
        ]
        for pattern, placeholder in steps:
            text, count = pattern.subn(placeholder, text)
            total += count
        return text, total
