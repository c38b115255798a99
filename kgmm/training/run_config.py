"""A training run described by one YAML file, as ``kgmm train CONFIG.yaml`` reads it.

```yaml
model:                # FusedConfig fields
  text: {max_length: 128}
  heads:
    intent: {type: classification}     # labels default to those found in the data
graph: graphs/support.tsv              # or {file: ..., format: ..., entities: ...}; optional
data:
  intent: {train: intent_train.jsonl, eval: intent_dev.jsonl}
training:             # TrainingArguments fields
  output_dir: runs/intent
  max_steps: 1000
```

``graph`` and the manifests resolve against the YAML file's folder; ``output_dir`` against
the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kgmm.data import read_manifest
from kgmm.errors import ConfigError
from kgmm.graph import KnowledgeGraph
from kgmm.model import FusedConfig, FusedModel
from kgmm.training.arguments import TrainingArguments
from kgmm.training.trainer import Trainer

SECTIONS = ("model", "graph", "data", "training")


def trainer_from_config(path: str | Path, **overrides: Any) -> Trainer:
    """The :class:`Trainer` a YAML run file describes; ``overrides`` replace fields of its
    ``training`` section (e.g. ``resume_from_checkpoint=True``)."""
    path = Path(path)
    config = _read(path)
    base = path.parent
    kg = _load_graph(config.get("graph"), base, path)
    train, evaluation = _load_data(config.get("data"), base, path)
    model_fields = dict(config.get("model") or {})
    model_fields["heads"] = _with_labels(model_fields.get("heads") or {}, train)
    model = FusedModel(FusedConfig.from_dict(model_fields), kg=kg)
    args = TrainingArguments.from_dict({**(config.get("training") or {}), **overrides})
    return Trainer(model, train, evaluation, args)


def _read(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the run config ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    for section in ("model", "data"):
        if not config.get(section):
            raise ConfigError(f"{path}: the {section!r} section is missing or empty")
    return config


def _load_graph(spec: Any, base: Path, path: Path) -> KnowledgeGraph | None:
    if spec is None:
        return None
    spec = {"file": spec} if isinstance(spec, str) else dict(spec)
    if "file" not in spec:
        raise ConfigError(f"{path}: graph needs a 'file' (a path, or {{file, format, entities}})")
    entities = spec.get("entities")
    return KnowledgeGraph.load(
        base / spec["file"],
        format=spec.get("format"),
        entities=None if entities is None else base / entities,
    )


def _load_data(
    spec: Any, base: Path, path: Path
) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: data must map each task to {{train: FILE, eval: FILE}}")
    train, evaluation = {}, {}
    for task, files in spec.items():
        if not isinstance(files, dict) or "train" not in files:
            raise ConfigError(f"{path}: data.{task} needs a 'train' manifest (and maybe 'eval')")
        unknown = sorted(set(files) - {"train", "eval"})
        if unknown:
            raise ConfigError(f"{path}: data.{task} has unknown keys {unknown}")
        train[task] = read_manifest(base / files["train"])
        if files.get("eval"):
            evaluation[task] = read_manifest(base / files["eval"])
    return train, evaluation


def _with_labels(heads: dict[str, Any], train: dict[str, list[dict]]) -> dict[str, Any]:
    """Classification heads without ``labels`` get the sorted labels of their training data."""
    filled = {}
    for task, spec in heads.items():
        spec = dict(spec)
        if spec.get("type") == "classification" and "labels" not in spec and task in train:
            found = set()
            for sample in train[task]:
                label = sample.get("label")
                found.update(label if isinstance(label, list) else [label])
            spec["labels"] = sorted(str(label) for label in found if label is not None)
        filled[task] = spec
    return filled
