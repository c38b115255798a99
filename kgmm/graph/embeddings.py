"""Entity embeddings: a feature matrix for downstream models, from a trained KG embedding
model (``kgmm.graph.kge``) or from a sentence encoder over entity names and descriptions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kgmm.errors import CheckpointError, ConfigError, UnknownEntityError

if TYPE_CHECKING:
    from kgmm.graph.kge.models import KGEModel
    from kgmm.graph.knowledge_graph import KnowledgeGraph

FORMAT = "kgmm.entity_embeddings"
FORMAT_VERSION = "1"
TEXT_MODEL = "text"


class EntityEmbeddings:
    """``vectors[i]`` is the feature vector of entity ``i`` of the graph it was made from.

    For KG embedding models the object also keeps what ranking needs: the relation table,
    the scoring model's settings (``config``) and the training triples (the filter set).
    For ComplEx and RotatE, ``vectors`` is ``[real parts | imaginary parts]``.
    """

    def __init__(
        self,
        vectors: torch.Tensor,
        entity_keys: Sequence[str],
        model_name: str,
        *,
        relation_vectors: torch.Tensor | None = None,
        relation_names: Sequence[str] = (),
        known_triples: np.ndarray | torch.Tensor | None = None,
        config: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(entity_keys):
            raise ConfigError(
                f"vectors must be [num_entities={len(entity_keys)}, dim], "
                f"got {tuple(vectors.shape)}"
            )
        self.vectors = vectors.detach().float().cpu().contiguous()
        self.entity_keys = list(entity_keys)
        self.model_name = model_name
        self.relation_vectors = (
            None if relation_vectors is None else relation_vectors.detach().float().cpu()
        )
        self.relation_names = list(relation_names)
        self.known_triples = (
            np.zeros((0, 3), dtype=np.int64)
            if known_triples is None
            else np.asarray(known_triples, dtype=np.int64).reshape(-1, 3)
        )
        self.config = dict(config or {})
        self.history = list(history or [])
        self._scorer: KGEModel | None = None

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        """Width of the entity feature vectors."""
        return self.vectors.shape[1]

    def __repr__(self) -> str:
        return f"EntityEmbeddings(model={self.model_name!r}, entities={len(self)}, dim={self.dim})"

    # ------------------------------------------------------------------ text embeddings
    @classmethod
    def from_text(
        cls,
        kg: KnowledgeGraph,
        model_name_or_path: str | None = None,
        batch_size: int = 64,
        device: str | None = None,
        progress: bool = False,
    ) -> EntityEmbeddings:
        """Encode each entity's "name: description (also: aliases)" with a
        sentence-transformers model (default: the packaged all-MiniLM-L6-v2, offline);
        the vectors are L2-normalised."""
        from sentence_transformers import SentenceTransformer

        from kgmm.resources import default_text_model_path

        source = model_name_or_path or default_text_model_path()
        encoder = SentenceTransformer(source, device=device or "cpu")
        texts = [entity_text(e.name, e.description, e.aliases) for e in kg.entities()]
        vectors = encoder.encode(
            texts,
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=progress,
        )
        return cls(
            vectors,
            [e.key for e in kg.entities()],
            TEXT_MODEL,
            relation_names=kg.relations,
            known_triples=kg.triples,
            config={"encoder": str(source)},
        )

    @staticmethod
    def text_dim(model_name_or_path: str | None = None) -> int:
        """Width of the vectors :meth:`from_text` makes with this model, without encoding."""
        from sentence_transformers import SentenceTransformer

        from kgmm.resources import default_text_model_path

        source = model_name_or_path or default_text_model_path()
        return SentenceTransformer(source, device="cpu").get_embedding_dimension()

    # ------------------------------------------------------------------ graph checks
    def check_graph(self, kg: KnowledgeGraph) -> None:
        """Raise :class:`ConfigError` unless these embeddings were made for ``kg``'s
        entities, in the same id order."""
        keys = [e.key for e in kg.entities()]
        if keys == self.entity_keys:
            return
        if len(keys) != len(self.entity_keys):
            raise ConfigError(
                f"the embeddings cover {len(self.entity_keys)} entities but the graph has "
                f"{len(keys)}; embed this graph again (kgmm.train_kg_embeddings or from_text)"
            )
        first = next(i for i, (a, b) in enumerate(zip(keys, self.entity_keys)) if a != b)
        raise ConfigError(
            f"entity {first} is {keys[first]!r} in the graph but {self.entity_keys[first]!r} "
            "in the embeddings; embed this graph again"
        )

    # ------------------------------------------------------------------ link prediction
    def scoring_model(self) -> KGEModel:
        """The KG embedding model these vectors came from, ready to score triples."""
        if self._scorer is None:
            if self.relation_vectors is None:
                raise ConfigError(
                    f"{self.model_name!r} embeddings have no relation table, so they cannot "
                    "score triples; train them with kgmm.train_kg_embeddings"
                )
            from kgmm.graph.kge.models import build_model

            model = build_model(
                self.model_name,
                len(self),
                len(self.relation_names),
                self.dim,
                reciprocal=bool(self.config.get("reciprocal", False)),
                gamma=float(self.config.get("gamma", 0.0)),
            )
            model.entity.data.copy_(self.vectors)
            model.relation.data.copy_(self.relation_vectors)
            self._scorer = model.eval()
        return self._scorer

    def encode_triples(self, triples: Iterable[Sequence[Any]] | np.ndarray) -> np.ndarray:
        """An ``[N, 3]`` id array from ids or from ``(head, relation, tail)`` keys."""
        array = np.asarray(triples.cpu() if isinstance(triples, torch.Tensor) else triples)
        if array.size and array.dtype.kind in "iu":
            array = array.astype(np.int64).reshape(-1, 3)
            _check_range(array[:, [0, 2]], len(self), "entity")
            _check_range(array[:, 1], len(self.relation_names), "relation")
            return array
        entity_ids = {key: i for i, key in enumerate(self.entity_keys)}
        relation_ids = {name: i for i, name in enumerate(self.relation_names)}
        rows = [
            (
                _lookup(entity_ids, h, "entity"),
                _lookup(relation_ids, r, "relation"),
                _lookup(entity_ids, t, "entity"),
            )
            for h, r, t in triples
        ]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def evaluate(
        self,
        triples: Iterable[Sequence[Any]] | np.ndarray,
        filtered: bool = True,
        also_known: Iterable[Sequence[Any]] | np.ndarray | None = None,
        batch_size: int = 256,
    ) -> dict[str, float]:
        """Filtered (or raw) MRR and Hits@1/3/10 of head and tail prediction on ``triples``.

        The filter set is the training triples, ``also_known`` (e.g. the valid split) and
        ``triples`` themselves.
        """
        from kgmm.graph.kge.evaluation import rank_metrics, rank_triples

        ids = self.encode_triples(triples)
        known = [self.known_triples, ids]
        if also_known is not None:
            known.append(self.encode_triples(also_known))
        ranks = rank_triples(self.scoring_model(), ids, np.concatenate(known), filtered, batch_size)
        return rank_metrics(ranks)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write one safetensors file; names and settings go in its header (no pickle)."""
        from safetensors.torch import save_file

        tensors = {
            "vectors": self.vectors,
            "known_triples": torch.as_tensor(self.known_triples, dtype=torch.int64),
        }
        if self.relation_vectors is not None:
            tensors["relation_vectors"] = self.relation_vectors
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "entity_keys": json.dumps(self.entity_keys),
            "relation_names": json.dumps(self.relation_names),
            "config": json.dumps(self.config),
            "history": json.dumps(self.history),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> EntityEmbeddings:
        """Read a file written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such embeddings file")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: not a safetensors file ({error})") from None
        if metadata.get("format") != FORMAT or "vectors" not in tensors:
            raise CheckpointError(f"{path}: not a kgmm entity-embeddings file")
        if metadata.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: format version {metadata.get('format_version')!r}, "
                f"this kgmm reads version {FORMAT_VERSION}"
            )
        return cls(
            tensors["vectors"],
            json.loads(metadata["entity_keys"]),
            metadata["model_name"],
            relation_vectors=tensors.get("relation_vectors"),
            relation_names=json.loads(metadata["relation_names"]),
            known_triples=tensors["known_triples"].numpy(),
            config=json.loads(metadata["config"]),
            history=json.loads(metadata.get("history", "[]")),
        )


def entity_text(name: str, description: str = "", aliases: Sequence[str] = ()) -> str:
    """The text a sentence encoder sees for one entity."""
    text = f"{name}: {description}" if description else name
    if aliases:
        text += f" (also: {', '.join(aliases)})"
    return text


def _lookup(ids: dict[str, int], name: Any, kind: str) -> int:
    found = ids.get(str(name))
    if found is None:
        raise UnknownEntityError(f"unknown {kind} {name!r} in a triple to evaluate")
    return found


def _check_range(ids: np.ndarray, size: int, kind: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= size):
        raise UnknownEntityError(
            f"{kind} ids must lie in [0, {size}), got {ids.min()}..{ids.max()}"
        )
