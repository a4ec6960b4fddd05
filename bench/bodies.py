"""Varied request bodies for the load benchmark: no server sees one body repeated.

Each workload sends many different bodies, one JSON document per line of the file
bench/post.lua reads; wrk's threads walk through them in turn. Repeating one body would
flatter whatever caches by content (Pillow's decoder state, the CPU's branch predictors,
a JSON parser's string interning) and is not what a server meets.

- Digits: the committed samples (models/digits/samples/*.png) and each digit 0-9 drawn
  (`models.digits.rendering.draw_digit`) at several canvas sizes and pen widths, 62
  images of 24 to 64 pixels, as a web page's canvas sends them (base64, some as a
  `data:` URL).
- XXXModel: 200 different names of 2 to 24 characters, some not ASCII.
- SentenceEmbedding: 50 sentences of 5 to 20 words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DIGIT_SIZES = (24, 28, 32, 48, 64, 40)
DIGIT_PENS = (0.08, 0.12)


def digit_bodies() -> list[bytes]:
    """62 different digit images as `{"image": ...}` bodies."""
    from models.digits.rendering import as_base64, draw_digit

    images = [path.read_bytes() for path in sorted((PROJECT_ROOT / "models/digits/samples").glob("*.png"))]
    for size in DIGIT_SIZES:
        for digit in range(10):
            images.append(draw_digit(digit, size=size, pen=DIGIT_PENS[(digit + size) % 2]))
    return [
        json.dumps({"image": as_base64(data, data_url=index % 3 == 0)}).encode() for index, data in enumerate(images)
    ]


_FIRST = ("Leo", "Ada", "Grace", "Linus", "Zoë", "José", "Mia", "Noah", "Olivia", "Sebastián")
_LAST = ("Lovelace", "Hopper", "Torvalds", "Nguyễn", "Müller", "O'Brien", "Smith", "Kowalski", "Ito", "Ng")


def greeting_bodies() -> list[bytes]:
    """200 different `{"name": ...}` bodies."""
    names = [f"{first} {last}" for first in _FIRST for last in _LAST]
    names += [first + str(number) for number in range(10) for first in _FIRST]
    return [json.dumps({"name": name}).encode() for name in names]


def sentence_bodies() -> list[bytes]:
    """50 different `{"text": ...}` bodies of 5 to 20 words."""
    sentence = "how do I serve a sentence embedding model without torch on two small cores and keep "
    sentence += "the latency low while many clients send their questions about search ranking titles"
    words = sentence.split(" ")
    texts = []
    for index in range(50):
        start, length = (index * 7) % len(words), 5 + index % 16
        texts.append(" ".join((words * 2)[start : start + length]) + f" ({index})")
    return [json.dumps({"text": text}).encode() for text in texts]


def write_bodies(make: Callable[[], list[bytes]], path: Path) -> int:
    """Write `make()`'s bodies to `path`, one per line (bench/post.lua's format); how many."""
    bodies = make()
    if any(b"\n" in body for body in bodies):
        raise ValueError("a body holds a line break: post.lua reads one body per line")
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return len(bodies)


def first_body(path: Path) -> bytes:
    """The first body of a file `write_bodies` wrote."""
    return path.read_bytes().split(b"\n", 1)[0]
