"""Entity linking: find KG entity mentions in text by surface form, optionally by embedding.

String linking looks normalised word n-grams up in a dictionary built once from every
entity's key (``_`` read as a space), display name and aliases, so its cost per token does
not grow with the number of aliases. Normalisation is Unicode NFKC plus case folding, and
punctuation (hyphens, apostrophes, commas, underscores...) separates tokens, so
``"Flu-like"`` holds the tokens ``flu`` and ``like``. Han and kana characters are one token
each, because those scripts do not put spaces between words. Mention offsets always index
the original text: ``text[m.start:m.end]`` is the matched span as written.

A surface form shared by several entities links to the first of them in a fixed order
(entities whose key or name is that form before those having it as an alias, then lower
id) with ``score = 1 / number of entities``; :meth:`EntityLinker.candidates` lists them all.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kgmm.errors import ConfigError, DataError
from kgmm.graph.entity import Entity, Mention
from kgmm.graph.knowledge_graph import KnowledgeGraph

ENGLISH_STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your
    yours yourself yourselves s t d ll m o re ve y
    """.split()
)

# Han ideographs, hiragana and katakana: scripts written without spaces between words.
_UNSPACED = (
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
_ASCII_WORD = re.compile("[A-Za-z0-9]+")
_DENSE_BATCH = 256
_SIMILARITY_CHUNK = 1024


@cache
def _combining_marks() -> str:
    """A regex character class of every Unicode combining mark (categories Mn, Mc, Me)."""
    categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    codes = [code for code, category in enumerate(categories) if category[0] == "M"]
    ranges, first = [], 0
    for index in range(1, len(codes) + 1):
        if index == len(codes) or codes[index] != codes[index - 1] + 1:
            ranges.append(f"\\U{codes[first]:08x}-\\U{codes[index - 1]:08x}")
            first = index
    return "[" + "".join(ranges) + "]"


@cache
def _token_pattern() -> re.Pattern[str]:
    """One token: a Han/kana character with its marks, or a run of letters, digits and marks."""
    marks = _combining_marks()
    return re.compile(f"[{_UNSPACED}]{marks}*|(?:[^\\W_{_UNSPACED}]|{marks})+")


@cache
def _cluster_pattern() -> re.Pattern[str]:
    """A character with the combining marks that follow it."""
    return re.compile(f"(?s).{_combining_marks()}*")


def _normalise(text: str, fold: bool) -> str:
    text = unicodedata.normalize("NFKC", text)
    return unicodedata.normalize("NFKC", text.casefold()) if fold else text


@lru_cache(maxsize=1 << 17)
def _normalise_word(word: str, fold: bool) -> tuple[tuple[str, int, int], ...]:
    """The normalised tokens of one non-ASCII word as ``(token, start, end)``, offsets
    relative to ``word``. NFKC may change lengths ("ﬁ" -> "fi") or split a word
    ("½" -> "1⁄2"); a split maps each piece back to the characters it came from."""
    pattern = _token_pattern()
    whole = _normalise(word, fold)
    if pattern.fullmatch(whole):
        return ((whole, 0, len(word)),)
    pieces: list[str] = []
    origin: list[tuple[int, int]] = []
    for cluster in _cluster_pattern().finditer(word):
        piece = _normalise(cluster.group(), fold)
        pieces.append(piece)
        origin.extend([cluster.span()] * len(piece))
    joined = "".join(pieces)
    return tuple(
        (m.group(), origin[m.start()][0], origin[m.end() - 1][1]) for m in pattern.finditer(joined)
    )


@dataclass(frozen=True)
class _Tokens:
    """Normalised tokens of a text and the original character span of each."""

    forms: list[str]
    starts: list[int]
    ends: list[int]


def _tokenise(text: str, fold: bool) -> _Tokens:
    if text.isascii():
        source = text.lower() if fold else text
        spans = [match.span() for match in _ASCII_WORD.finditer(source)]
        return _Tokens(
            [source[a:b] for a, b in spans], [a for a, _ in spans], [b for _, b in spans]
        )
    forms: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for match in _token_pattern().finditer(text):
        word = match.group()
        start = match.start()
        if word.isascii():
            forms.append(word.lower() if fold else word)
            starts.append(start)
            ends.append(match.end())
            continue
        for form, begin, end in _normalise_word(word, fold):
            forms.append(form)
            starts.append(start + begin)
            ends.append(start + end)
    return _Tokens(forms, starts, ends)


class EntityLinker:
    """Links text to the entities of a :class:`KnowledgeGraph`.

    ``link`` returns non-overlapping :class:`Mention` objects sorted by start. Among
    overlapping string matches the one with more tokens wins, then the one with more
    characters, then the earlier one. Surface forms shorter than ``min_length`` characters
    (after normalisation, spaces not counted) or made of ``stopwords`` only are not indexed.

    With ``dense=True``, word n-grams (1 to ``max_ngram`` tokens) that no string match
    covers, that neither start nor end with a stopword and that do not cross clause
    punctuation are embedded with sentence-transformers (``dense_model``: a model name,
    path or loaded ``SentenceTransformer``; default the packaged MiniLM, on CPU) and
    compared by cosine with each entity's name. Spans whose best entity reaches
    ``dense_threshold`` are kept, highest cosine first, without overlaps; their score is
    the cosine. Results of the last ``cache_size`` distinct texts are cached.

    ``types`` limits linking to entities of those types (for example the source-language
    side of a bilingual lexicon); the others stay in the graph as neighbours.
    """

    def __init__(
        self,
        kg: KnowledgeGraph,
        *,
        min_length: int = 2,
        case_sensitive: bool = False,
        dense: bool = False,
        dense_model: str | Path | Any | None = None,
        dense_threshold: float = 0.75,
        max_ngram: int = 4,
        stopwords: Iterable[str] = ENGLISH_STOPWORDS,
        cache_size: int = 1024,
        types: Iterable[str] | None = None,
    ) -> None:
        if min_length < 1:
            raise ConfigError(f"min_length must be at least 1, got {min_length}")
        if max_ngram < 1:
            raise ConfigError(f"max_ngram must be at least 1, got {max_ngram}")
        if not -1.0 <= dense_threshold <= 1.0:
            raise ConfigError(f"dense_threshold is a cosine in [-1, 1], got {dense_threshold}")
        if cache_size < 0:
            raise ConfigError(f"cache_size must be 0 or more, got {cache_size}")
        self.kg = kg
        self.min_length = min_length
        self.case_sensitive = case_sensitive
        self.dense = dense
        self.dense_threshold = dense_threshold
        self.max_ngram = max_ngram
        self.stopwords = frozenset(_normalise(word, True) for word in stopwords)
        self.types = None if types is None else frozenset(types)
        if self.types is not None and not self.types:
            raise ConfigError("types is empty: no entity could be linked; pass None for all")
        self._dense_source = dense_model
        self._model: Any = None
        self._entity_vectors: np.ndarray | None = None
        self._dense_ids = np.zeros(0, dtype=np.int64)  # entity id of each row of the vectors
        self._cache: OrderedDict[str, tuple[Mention, ...]] = OrderedDict()
        self._cache_size = cache_size
        # Each indexed form (tokens joined by spaces) and each proper prefix of a form maps
        # to (entity ids best first, or () for a prefix only; whether a longer form extends it).
        self._table: dict[str, tuple[tuple[int, ...], bool]] = {}
        self._build_index()

    # ------------------------------------------------------------------ index
    def _surface_form(self, surface: str) -> str | None:
        """The normalised tokens of ``surface`` joined by spaces, or None if not indexed."""
        fold = not self.case_sensitive
        if surface.isascii():
            forms = _ASCII_WORD.findall(surface.lower() if fold else surface)
        else:
            forms = _tokenise(surface, fold).forms
        if not forms or sum(map(len, forms)) < self.min_length:
            return None
        folded = [_normalise(token, True) for token in forms] if self.case_sensitive else forms
        if all(token in self.stopwords for token in folded):
            return None
        return " ".join(forms)

    def _linkable(self, entity: Entity) -> bool:
        return self.types is None or entity.type in self.types

    def _build_index(self) -> None:
        ranked: dict[str, list[tuple[int, int]]] = {}
        for entity in self.kg.entities():
            if not self._linkable(entity):
                continue
            surfaces = [(0, entity.key), (0, entity.name), *((1, a) for a in entity.aliases)]
            for rank, surface in surfaces:
                form = self._surface_form(surface)
                if form is not None:
                    ranked.setdefault(form, []).append((rank, entity.id))
        table = self._table
        for form, entries in ranked.items():
            if len(entries) == 1:
                ids: tuple[int, ...] = (entries[0][1],)
            else:
                ids = tuple(dict.fromkeys(entity_id for _, entity_id in sorted(entries)))
            extends = table[form][1] if form in table else False
            table[form] = (ids, extends)
            end = form.rfind(" ")
            while end > 0:
                prefix = form[:end]
                known = table.get(prefix)
                if known is not None and known[1]:
                    break
                table[prefix] = (known[0] if known else (), True)
                end = form.rfind(" ", 0, end)

    @property
    def num_surface_forms(self) -> int:
        """How many distinct normalised surface forms the index holds."""
        return sum(1 for ids, _ in self._table.values() if ids)

    def candidates(self, surface: str) -> list[int]:
        """Every entity whose key, name or alias normalises to ``surface``, best first."""
        form = self._surface_form(surface)
        return list(self._table.get(form, ((), False))[0]) if form is not None else []

    # ------------------------------------------------------------------ linking
    def link(self, text: str) -> list[Mention]:
        """Mentions of KG entities in ``text``, sorted by start offset."""
        return self.link_batch([text])[0]

    def link_batch(self, texts: Sequence[str]) -> list[list[Mention]]:
        """:meth:`link` for each text; dense linking embeds all texts' spans together."""
        results: list[list[Mention] | None] = [None] * len(texts)
        missing: dict[str, list[int]] = {}
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"texts[{index}]: expected a string, got {type(text).__name__}")
            cached = self._cache.get(text)
            if cached is None:
                missing.setdefault(text, []).append(index)
            else:
                self._cache.move_to_end(text)
                results[index] = list(cached)
        for text, mentions in zip(missing, self._link_uncached(list(missing))):
            for index in missing[text]:
                results[index] = list(mentions)
            if self._cache_size:
                self._cache[text] = tuple(mentions)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return results  # type: ignore[return-value]

    def _link_uncached(self, texts: list[str]) -> list[list[Mention]]:
        tokenised = [_tokenise(text, not self.case_sensitive) for text in texts]
        spans = [self._string_matches(tokens) for tokens in tokenised]
        if self.dense and texts:
            for found, extra in zip(spans, self._dense_matches(texts, tokenised, spans)):
                found.extend(extra)
        return [
            sorted(
                (
                    Mention(tokens.starts[i], tokens.ends[j - 1], entity_id, score)
                    for i, j, entity_id, score in found
                ),
                key=lambda m: m.start,
            )
            for tokens, found in zip(tokenised, spans)
        ]

    def _string_matches(self, tokens: _Tokens) -> list[tuple[int, int, int, float]]:
        """Non-overlapping ``(first token, end token, entity id, score)`` string matches."""
        forms, table, count = tokens.forms, self._table, len(tokens.forms)
        found: list[tuple[int, int, tuple[int, ...]]] = []
        for i in range(count):
            key, j = forms[i], i + 1
            entry = table.get(key)
            while entry is not None:
                if entry[0]:
                    found.append((i, j, entry[0]))
                if not entry[1] or j == count:
                    break
                key = f"{key} {forms[j]}"
                j += 1
                entry = table.get(key)
        starts, ends = tokens.starts, tokens.ends
        found.sort(key=lambda m: (m[0] - m[1], starts[m[0]] - ends[m[1] - 1], m[0]))
        return [(i, j, ids[0], 1.0 / len(ids)) for i, j, ids in _without_overlaps(found, count)]

    # ------------------------------------------------------------------ dense linking
    def _dense_matches(
        self,
        texts: list[str],
        tokenised: list[_Tokens],
        string_spans: list[list[tuple[int, int, int, float]]],
    ) -> list[list[tuple[int, int, int, float]]]:
        per_text = [
            self._dense_spans(text, tokens, found)
            for text, tokens, found in zip(texts, tokenised, string_spans)
        ]
        phrases = list(dict.fromkeys(phrase for spans in per_text for _, _, phrase in spans))
        if not phrases:
            return [[] for _ in texts]
        best_entity, best_score = self._nearest_entities(phrases)
        where = {phrase: k for k, phrase in enumerate(phrases)}
        results = []
        for tokens, spans in zip(tokenised, per_text):
            scored = []
            for i, j, phrase in spans:
                k = where[phrase]
                if best_score[k] >= self.dense_threshold:
                    scored.append((i, j, int(best_entity[k]), float(best_score[k])))
            scored.sort(key=lambda m: (-m[3], m[0] - m[1], m[0]))
            results.append(list(_without_overlaps(scored, len(tokens.forms))))
        return results

    def _dense_spans(
        self, text: str, tokens: _Tokens, string_spans: list[tuple[int, int, int, float]]
    ) -> list[tuple[int, int, str]]:
        """Candidate ``(first token, end token, phrase)`` n-grams for dense linking."""
        count = len(tokens.forms)
        covered = bytearray(count)
        for i, j, *_ in string_spans:
            covered[i:j] = b"\x01" * (j - i)
        stop = [_normalise(form, True) in self.stopwords for form in tokens.forms]
        spans = []
        for i in range(count):
            if covered[i] or stop[i]:
                continue
            for j in range(i + 1, min(count, i + self.max_ngram) + 1):
                if covered[j - 1] or (j - 1 > i and _breaks_phrase(text, tokens, j - 1)):
                    break
                if stop[j - 1]:
                    continue
                if sum(len(form) for form in tokens.forms[i:j]) >= self.min_length:
                    phrase = " ".join(text[tokens.starts[i] : tokens.ends[j - 1]].split())
                    spans.append((i, j, phrase))
        return spans

    def _nearest_entities(self, phrases: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each phrase, the entity whose name embedding is closest, and the cosine."""
        model = self._load_model()
        entities = self._entity_embeddings()
        vectors = model.encode(
            phrases, batch_size=_DENSE_BATCH, normalize_embeddings=True, convert_to_numpy=True
        ).astype(np.float32)
        best_entity = np.zeros(len(phrases), dtype=np.int64)
        best_score = np.full(len(phrases), -np.inf, dtype=np.float32)
        if len(entities):
            for start in range(0, len(phrases), _SIMILARITY_CHUNK):
                similarity = vectors[start : start + _SIMILARITY_CHUNK] @ entities.T
                best_entity[start : start + len(similarity)] = self._dense_ids[
                    similarity.argmax(axis=1)
                ]
                best_score[start : start + len(similarity)] = similarity.max(axis=1)
        return best_entity, best_score

    def _entity_embeddings(self) -> np.ndarray:
        """Unit-length embeddings of every entity's name, computed once."""
        if self._entity_vectors is None:
            linkable = [e for e in self.kg.entities() if self._linkable(e)]
            self._dense_ids = np.array([e.id for e in linkable], dtype=np.int64)
            names = [entity.name.replace("_", " ") for entity in linkable]
            vectors = self._load_model().encode(
                names,
                batch_size=_DENSE_BATCH,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=len(names) > 10_000,
            )
            self._entity_vectors = np.asarray(vectors, dtype=np.float32).reshape(len(names), -1)
        return self._entity_vectors

    def _load_model(self) -> Any:
        if self._model is not None:
            return self._model
        source = self._dense_source
        if source is not None and not isinstance(source, (str, Path)):
            self._model = source
            return source
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(
                "dense=True needs sentence-transformers (pip install sentence-transformers)"
            ) from None
        if source is None:
            from kgmm.resources import default_text_model_path

            source = default_text_model_path()
        try:
            self._model = SentenceTransformer(str(source), device="cpu")
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot load the dense linking model {str(source)!r}: {error}; pass "
                "dense_model= a sentence-transformers model folder, name or loaded model"
            ) from None
        return self._model

    def __repr__(self) -> str:
        return (
            f"EntityLinker(entities={self.kg.num_entities}, "
            f"surface_forms={self.num_surface_forms}, dense={self.dense})"
        )


def _without_overlaps(ranked: Iterable[tuple], count: int) -> Iterable[tuple]:
    """The matches ``(first token, end token, ...)`` in ``ranked`` order that do not
    overlap one taken earlier."""
    taken = bytearray(count)
    for match in ranked:
        i, j = match[0], match[1]
        if not any(taken[i:j]):
            taken[i:j] = b"\x01" * (j - i)
            yield match


_JOINING_PUNCTUATION = frozenset("'’‘-‐‑/·&")


def _breaks_phrase(text: str, tokens: _Tokens, index: int) -> bool:
    """Whether the gap before token ``index`` holds clause punctuation or a line break."""
    gap = text[tokens.ends[index - 1] : tokens.starts[index]]
    return any(
        char == "\n" or (unicodedata.category(char)[0] == "P" and char not in _JOINING_PUNCTUATION)
        for char in gap
    )
