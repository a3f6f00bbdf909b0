"""Text as MediaPipe's `TextClassifier` reads it: its regex tokenizer, the
vocabulary file its metadata carries, and the token ids a model takes.

MediaPipe's regex tokenizer (mediapipe/tasks/cc/text/tokenizers/
regex_tokenizer.cc, fed by calculators/tensor/regex_preprocessor_calculator.cc)
does this to a text, and so does `Tokenizer` here, and the generated module:

- the text ends at its first NUL character (C++ reads it as a C string);
- it is split at each match of the delimiter regex, by RE2, whose `\\w`,
  `\\d` and `\\s` are ASCII only: so every character outside ASCII is a
  delimiter under the default regex `[^\\w\\']+` (Python's `re` runs the
  same regex with `re.ASCII`);
- the pieces between delimiters that are not empty are the tokens, in order;
- nothing is lower-cased: MediaPipe does not. `lowercase: true` lower-cases
  ASCII letters before splitting, which an app must then do itself before
  it calls `classify` (model.json and the build's log say so);
- the ids are `<START>`, then each token's id (`<UNKNOWN>`'s where the
  vocabulary has no such token), cut at `max_len` and padded with `<PAD>`.

The vocabulary is `<PAD>` (0), `<START>` (1) and `<UNKNOWN>` (2), then the
training split's most frequent tokens, most frequent first, ties in the
order first seen. A token holding a space or a line break cannot be written
as a line of MediaPipe's vocabulary file ("token id"), so it stays out and
reads as `<UNKNOWN>` in both places.

This module is shared by the spec, the plan and the build: it imports only
the standard library.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_REGEX",
    "PAD",
    "SPECIAL",
    "START",
    "UNKNOWN",
    "VOCABULARY_FILE",
    "TextSettings",
    "Tokenizer",
    "encode",
    "regex_problem",
    "vocabulary",
    "vocabulary_text",
]

#: MediaPipe Model Maker's delimiter regex: anything but word characters and
#: apostrophes splits tokens.
DEFAULT_REGEX = r"[^\w\']+"
#: How many of the training split's tokens the vocabulary keeps, by default.
DEFAULT_MAX_TOKENS = 10_000
PAD, START, UNKNOWN = "<PAD>", "<START>", "<UNKNOWN>"
#: The special tokens, at ids 0, 1 and 2, as MediaPipe's tokenizer looks them up.
SPECIAL = (PAD, START, UNKNOWN)
#: The vocabulary file's name, beside the model and inside the TFLite file.
VOCABULARY_FILE = "vocab.txt"
#: Characters a vocabulary line cannot hold inside a token: MediaPipe reads
#: the file a line at a time and splits each line at its spaces.
_UNWRITABLE = frozenset(" \n\r")
#: Regex syntax RE2 (MediaPipe's engine) does not have, which Python's has.
_NOT_RE2 = (
    ("(?=", "lookahead"),
    ("(?!", "negative lookahead"),
    ("(?<=", "lookbehind"),
    ("(?<!", "negative lookbehind"),
    ("(?P=", "a backreference"),
    ("(?#", "a comment group"),
    ("(?(", "a conditional group"),
)


@dataclass(frozen=True)
class TextSettings:
    """A text recipe's tokenizer and vocabulary (train.text)."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    lowercase: bool = False
    regex: str = DEFAULT_REGEX

    @property
    def capacity(self) -> int:
        """The most ids the vocabulary can have: its tokens and the specials
        (an embedding's input_dim, where the spec leaves it out)."""
        return self.max_tokens + len(SPECIAL)


def regex_problem(regex: str) -> str | None:
    """Why MediaPipe's tokenizer and Python's could not split by `regex` the
    same way (None: they can)."""
    if not regex:
        return "is empty"
    if "\0" in regex:
        return "holds a NUL character, where MediaPipe's copy of it would end"
    for syntax, name in _NOT_RE2:
        if syntax in regex:
            return f"uses {name} ({syntax!r}), which RE2 (MediaPipe's engine) lacks"
    if re.search(r"\\[1-9]", regex):
        return "uses a backreference, which RE2 (MediaPipe's engine) lacks"
    try:
        compiled = re.compile(regex, re.ASCII)
    except re.error as exc:
        return f"is not a regular expression: {exc}"
    if compiled.search("") is not None or compiled.fullmatch("") is not None:
        return (
            "matches the empty string, so it cannot split text (MediaPipe's "
            "tokenizer would never finish)"
        )
    return None


class Tokenizer:
    """MediaPipe's regex tokenizer, in Python (see the module's docstring)."""

    def __init__(self, regex: str = DEFAULT_REGEX, lowercase: bool = False) -> None:
        problem = regex_problem(regex)
        if problem is not None:
            raise ValueError(f"regex {regex!r} {problem}")
        self.delimiter = re.compile(regex, re.ASCII)
        self.lowercase = lowercase

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text`, in order."""
        text = text.split("\0", 1)[0]
        if self.lowercase:
            text = _ascii_lower(text)
        return [piece for piece in self.delimiter.split(text) if piece]


_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    """`text` with its ASCII letters lower-cased, and nothing else changed
    (str.lower also changes letters outside ASCII, some into ASCII ones)."""
    return text.translate(_LOWER)


def vocabulary(counts: Counter[str], max_tokens: int) -> list[str]:
    """The vocabulary, by id: the specials, then the `max_tokens` most
    frequent tokens of `counts` that a vocabulary file can hold (ties in
    the order `counts` first saw them)."""
    kept = [
        token
        for token, _ in counts.most_common()
        if token not in SPECIAL and not (_UNWRITABLE & set(token))
    ]
    return [*SPECIAL, *kept[:max_tokens]]


def count(tokenizer: Tokenizer, texts: Iterable[str]) -> Counter[str]:
    """How often each token occurs in `texts`."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(tokenizer.tokens(text))
    return counts


def encode(tokens: Sequence[str], ids: Mapping[str, int], max_len: int) -> list[int]:
    """The model's input for one text's tokens: `<START>`, the tokens' ids
    (`<UNKNOWN>`'s where `ids` has none), cut at `max_len`, padded with
    `<PAD>`."""
    unknown = ids[UNKNOWN]
    found = [ids[START], *(ids.get(token, unknown) for token in tokens)]
    found = found[:max_len]
    return found + [ids[PAD]] * (max_len - len(found))


def vocabulary_text(tokens: Sequence[str]) -> str:
    """The vocabulary file MediaPipe reads: one `token id` a line."""
    return "".join(f"{token} {i}\n" for i, token in enumerate(tokens))


def read_vocabulary(text: str) -> list[str]:
    """The tokens of a vocabulary file, by id (the file `vocabulary_text`
    writes)."""
    found: dict[int, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line:
            continue
        token, _, index = line.rpartition(" ")
        if not token or not index.isdigit():
            raise ValueError(f"line {number}: not 'token id': {line!r}")
        found[int(index)] = token
    if sorted(found) != list(range(len(found))):
        raise ValueError("its ids are not 0, 1, 2, ... without gaps")
    tokens = [found[i] for i in range(len(found))]
    if tuple(tokens[: len(SPECIAL)]) != SPECIAL:
        raise ValueError(f"it does not start with {', '.join(SPECIAL)}")
    return tokens
