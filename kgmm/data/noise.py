"""Character-level noise (typos and casing) for robustness test sets.

Each edit hits one letter: a substitution by a neighbouring QWERTY key, a deletion, an
insertion of a neighbouring key, a transposition with the next letter, or a casing flip.
The edited letters are never adjacent, so a text with ``k`` edits is exactly ``k``
optimal-string-alignment edits away from the original. Seeded and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kgmm.errors import ConfigError

_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
EDITS = ("substitute", "delete", "insert", "transpose", "case")


def _keyboard_neighbours() -> dict[str, str]:
    """Each lower-case letter -> the letters on the keys around it (same and adjacent rows)."""
    position = {c: (r, i) for r, row in enumerate(_QWERTY_ROWS) for i, c in enumerate(row)}
    return {
        letter: "".join(
            other
            for other, (r2, i2) in position.items()
            if other != letter and abs(r2 - r) <= 1 and abs(i2 - i) <= 1
        )
        for letter, (r, i) in position.items()
    }


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()


def character_noise(text: str, rate: float, seed: int = 0) -> str:
    """``text`` with ``round(rate * letters)`` typos or casing flips at distinct, non-adjacent
    letters (fewer when the text has too few letters to keep them apart)."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"noise rate must be in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    wanted = round(rate * len(letters))
    chosen: list[int] = []
    for index in rng.permutation(letters).tolist():
        if len(chosen) == wanted:
            break
        if all(abs(index - other) > 1 for other in chosen):
            chosen.append(index)
    chars = list(text)
    for index in sorted(chosen, reverse=True):  # right to left: earlier indices stay valid
        _edit(chars, index, EDITS[rng.integers(len(EDITS))], rng)
    return "".join(chars)


def _edit(chars: list[str], index: int, kind: str, rng: np.random.Generator) -> None:
    char = chars[index]
    keys = KEYBOARD_NEIGHBOURS.get(char.lower(), "")
    following = chars[index + 1] if index + 1 < len(chars) else ""
    if kind == "transpose" and following.isalpha() and following != char:
        chars[index], chars[index + 1] = following, char
    elif kind == "delete":
        del chars[index]
    elif kind in ("substitute", "insert") and keys:
        key = keys[rng.integers(len(keys))]
        key = key.upper() if char.isupper() else key
        chars[index : index + 1] = [key] if kind == "substitute" else [char, key]
    elif char.swapcase() != char and len(char.swapcase()) == 1:
        chars[index] = char.swapcase()
    else:  # an uncased letter with no keyboard neighbours (e.g. Han): delete it
        del chars[index]


def noisy_samples(samples: Sequence[dict], rate: float, seed: int = 0) -> list[dict]:
    """Copies of ``samples`` whose string ``text`` carries :func:`character_noise`; every
    other field (the label) is kept. Sample ``i`` uses seed ``(seed, i)``."""
    noisy = []
    for index, sample in enumerate(samples):
        copy = dict(sample)
        if isinstance(sample.get("text"), str):
            sample_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
            copy["text"] = character_noise(sample["text"], rate, sample_seed)
        noisy.append(copy)
    return noisy
