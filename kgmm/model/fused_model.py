"""``FusedModel``: encoders + knowledge fusion + task heads, with save/load and predict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kgmm.data import Collator, longest_first
from kgmm.data.batch import move_to
from kgmm.device import autocast
from kgmm.errors import CheckpointError, ConfigError, DataError
from kgmm.fusion import KnowledgeFusion
from kgmm.graph import KnowledgeGraph
from kgmm.graph.embeddings import EntityEmbeddings
from kgmm.graph.linker import EntityLinker
from kgmm.heads import head_config
from kgmm.model.adapter_config import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, AdapterConfig
from kgmm.model.builders import build_encoder, build_head
from kgmm.model.config import FusedConfig
from kgmm.model.output import ModelOutput
from kgmm.model.quantization import is_int8_dynamic, resolve_model_bf16

if TYPE_CHECKING:
    from kgmm.model.adapters import Adapter

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GRAPH_FILE = "graph.tsv"
TEXT_FOLDER = "text_encoder"


class FusedModel(nn.Module):
    """One model over any mix of text, image and audio, fused with a knowledge graph.

    ``kg`` is optional (no graph = no knowledge). Entity vectors come from
    ``entity_embeddings`` when given, else from ``config.entity_embeddings.source``.
    A model built with knowledge ``off`` and ``source="text"`` embeds its entities only
    when :meth:`set_knowledge` turns the knowledge on (an off model never reads them).
    """

    def __init__(
        self,
        config: FusedConfig,
        kg: KnowledgeGraph | None = None,
        entity_embeddings: EntityEmbeddings | None = None,
    ) -> None:
        super().__init__()
        torch.manual_seed(config.seed)
        self.config = config
        self.kg = kg
        self.encoders = nn.ModuleDict(
            {m: build_encoder(m, getattr(config, m)) for m in config.modalities}
        )
        fusion_config = config.fusion
        fusion_config.modalities = tuple(m for m in fusion_config.modalities)
        self._table_deferred = (
            kg is not None
            and entity_embeddings is None
            and config.entity_embeddings.source == "text"
            and fusion_config.knowledge == "off"
        )
        table = None if self._table_deferred else _entity_table(config, kg, entity_embeddings)
        if kg is not None:
            fusion_config.entity_dim = (
                EntityEmbeddings.text_dim() if table is None else table.shape[1]
            )
            fusion_config.num_relations = kg.num_relations
        self.fusion = KnowledgeFusion(
            fusion_config, {m: enc.output_dim for m, enc in self.encoders.items()}
        )
        self.register_buffer("entity_table", None)
        self._set_entity_table(table)
        self.heads = nn.ModuleDict(
            {
                task: build_head(task, spec, fusion_config.d_model)
                for task, spec in config.heads.items()
            }
        )
        self._linker: EntityLinker | None = None
        self._random = torch.Generator().manual_seed(config.seed)
        self.adapter: Adapter | None = None
        self.encoders_compiled = False

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        task: str,
        batch_size: int,
        text: dict[str, torch.Tensor] | None = None,
        image: dict[str, torch.Tensor] | None = None,
        audio: dict[str, torch.Tensor] | None = None,
        entity_ids: torch.Tensor | None = None,
        entity_mask: torch.Tensor | None = None,
        entity_relations: torch.Tensor | None = None,
        entity_hops: torch.Tensor | None = None,
        **targets: torch.Tensor,
    ) -> ModelOutput:
        """Run the batch a :meth:`collator` made through encoders, fusion and ``task``'s head."""
        head = self._head(task)
        modalities, pooled = {}, {}
        for name, inputs in (("text", text), ("image", image), ("audio", audio)):
            if inputs is None:
                continue
            if name not in self.encoders:
                raise DataError(f"the batch has {name} but the model has no {name} encoder")
            modalities[name], pooled[name] = self._encode(name, inputs, batch_size)
        use_entities = self.entity_table is not None and entity_ids is not None
        fused = self.fusion(
            modalities,
            pooled=pooled,
            entity_ids=entity_ids if use_entities else None,
            entity_mask=entity_mask if use_entities else None,
            entity_relations=entity_relations if use_entities else None,
            entity_hops=entity_hops if use_entities else None,
            entity_table=self.entity_table,
            generator=self._random if self.fusion.config.knowledge == "random" else None,
        )
        result = head(fused, **targets)
        return ModelOutput(
            loss=result.loss,
            logits=result.logits,
            predictions=result.predictions,
            entity_ids=fused.entity_ids,
            entity_mask=fused.entity_mask,
            entity_attention=fused.entity_attention,
            fused=fused,
        )

    def _encode(
        self, name: str, inputs: dict[str, torch.Tensor], batch_size: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Encode the samples that have this modality; place them at their batch rows."""
        index = inputs["index"]
        arguments = {k: v for k, v in inputs.items() if k != "index"}
        out = self.encoders[name](**arguments)
        if len(index) == batch_size and bool((index == torch.arange(batch_size)).all()):
            return (out.tokens, out.mask), out.pooled
        tokens = out.tokens.new_zeros(batch_size, *out.tokens.shape[1:])
        mask = out.mask.new_zeros(batch_size, out.mask.shape[1])
        pooled = out.pooled.new_zeros(batch_size, out.pooled.shape[1])
        tokens[index], mask[index], pooled[index] = out.tokens, out.mask, out.pooled
        return (tokens, mask), pooled

    def _head(self, task: str) -> nn.Module:
        if task not in self.heads:
            raise ConfigError(f"unknown task {task!r}; this model has heads {sorted(self.heads)}")
        return self.heads[task]

    # ------------------------------------------------------------------ data
    @property
    def linker(self) -> EntityLinker | None:
        if self._linker is None and self.kg is not None:
            linking = self.config.linking
            self._linker = EntityLinker(
                self.kg,
                dense=linking.dense,
                dense_threshold=linking.dense_threshold,
                types=linking.types,
            )
        return self._linker

    def collator(self, task: str, targets: bool = True) -> Collator:
        """The :class:`Collator` that turns ``task``'s sample dicts into batches; with
        ``targets=False`` it collates only what prediction needs (no labels)."""
        head = self._head(task)
        knowledge = self.fusion.config.knowledge != "off" and self.entity_table is not None
        return Collator(
            {m: enc.preprocessor for m, enc in self.encoders.items()},
            kg=self.kg,
            linker=self.linker if knowledge else None,
            hops=self.config.linking.hops,
            max_entities=self.config.linking.max_entities,
            targets=head.collate_targets if targets else head.collate_inputs,
            expand=getattr(head, "expand_samples", None),
            link=knowledge,
            input_fields=head.input_fields,
        )

    def set_knowledge(self, mode: str) -> None:
        """Switch the ablation mode (``on``/``off``/``random``) of a built model. A model
        built with knowledge off embeds its entities here, when first turned on: do it before
        building the optimizer if the entity table is trainable."""
        from kgmm.fusion.config import KNOWLEDGE_MODES

        if mode not in KNOWLEDGE_MODES:
            raise ConfigError(f"knowledge must be one of {KNOWLEDGE_MODES}, got {mode!r}")
        self.fusion.config.knowledge = mode
        if mode != "off" and self._table_deferred:
            table = _entity_table(self.config, self.kg, None)
            self._set_entity_table(table.to(next(self.fusion.parameters()).device))
            self._table_deferred = False

    def compile_encoders(self) -> None:
        """``torch.compile`` each modality encoder in place (inductor, dynamic shapes:
        batches differ in length). The state dict, API and results stay the same; the first
        training and the first inference call each pay the compilation (about a minute for
        MiniLM on one CPU core). Fusion and heads stay eager: their entity counts change
        every batch, which would recompile them. A second call does nothing.

        Dropout draws from torch's generator (``fallback_random``), as in eager mode: the
        same seed gives the same masks (inductor's own CPU generator was also the slower
        of the two for MiniLM here). Whether compiling pays depends on the model: in
        ``benchmarks/train_speed.py --turns --levers compile kg-compile`` it did not for
        MiniLM with knowledge fusion.
        """
        if self.encoders_compiled:
            return
        for encoder in self.encoders.values():
            encoder.compile(dynamic=True, options={"fallback_random": True})
        self.encoders_compiled = True

    def _set_entity_table(self, table: torch.Tensor | None) -> None:
        if table is not None and self.config.entity_embeddings.trainable:
            self.entity_table = nn.Parameter(table)
        else:
            self.entity_table = table

    def predict(
        self, samples: list[dict], task: str, batch_size: int = 32, bf16: bool | str = "auto"
    ) -> list[Any]:
        """Raw sample dicts in (texts, image paths or PIL images, audio paths or waveforms),
        Python results out (labels, answers, sentences, items), in the order of ``samples``.

        Batches are cut from the samples sorted by text length, longest first, so each pads
        to a length near its samples' own (``benchmarks/inference.py`` measures the gain),
        and run under ``torch.inference_mode`` and, when ``bf16`` (``"auto"``: where the
        device multiplies bf16 in hardware, :func:`kgmm.device.native_bf16`), bf16
        autocast (a model quantised by :func:`kgmm.model.int8_dynamic` runs in fp32)."""
        head = self._head(task)
        collate = self.collator(task, targets=False)
        was_training = self.training
        device = next(self.parameters()).device
        bf16 = resolve_model_bf16(self, bf16, device)
        self.eval()
        order = longest_first(samples)
        results: list[Any] = [None] * len(samples)
        try:
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                batch = move_to(collate([samples[index] for index in indices]), device)
                with torch.inference_mode(), autocast(device, bf16):
                    output = self(task=task, **batch)
                for index, result in zip(indices, head.decode(_head_output(output)), strict=True):
                    results[index] = result
        finally:
            self.train(was_training)
        return results

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, config: AdapterConfig) -> None:
        """Attach a peft adapter (:class:`AdapterConfig`) and freeze every other parameter
        except those ``config.trainable`` names (the heads by default)."""
        if self.adapter is not None:
            raise ConfigError("the model already has an adapter; merge_adapter() it first")
        from kgmm.model.adapters import Adapter  # peft takes seconds to import: only when used

        self.adapter = Adapter(self, config)

    def save_adapter(self, directory: str | Path) -> None:
        """Write the adapter alone (config + safetensors weights, with the parameters
        ``trainable`` named) into ``directory``; :meth:`load_adapter` reads it back."""
        self._attached_adapter().save(directory)

    def load_adapter(self, directory: str | Path) -> None:
        """Attach the adapter saved in ``directory`` (when none is attached) and load its
        weights; the base model must be the one it was trained on."""
        directory = Path(directory)
        for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory}: missing {name}; is this a saved adapter?")
        config = AdapterConfig.from_dict(json.loads((directory / ADAPTER_CONFIG_FILE).read_text()))
        if self.adapter is None:
            self.add_adapter(config)
        elif self.adapter.config != config:
            raise CheckpointError(
                f"{directory} holds a {config.method} adapter that differs from the attached "
                f"{self.adapter.config.method} adapter"
            )
        self.adapter.load_weights(directory / ADAPTER_WEIGHTS_FILE)

    def merge_adapter(self) -> None:
        """Fold LoRA/AdaLoRA/IA3 weights into the base layers (faster inference, plain
        checkpoint) and detach the adapter; prefix tuning cannot merge."""
        self._attached_adapter().merge()
        self.adapter = None

    def _attached_adapter(self) -> Adapter:
        if self.adapter is None:
            raise ConfigError("the model has no adapter; call add_adapter(AdapterConfig(...))")
        return self.adapter

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json``, ``model.safetensors``, the text encoder's config and
        tokenizer, and the graph, so :meth:`from_pretrained` needs nothing else; with an
        adapter attached also ``adapter_config.json`` (the weights include the adapter)."""
        if is_int8_dynamic(self):
            raise ConfigError(
                "an int8 model is for inference only: save the fp32 model and quantise it "
                "after loading (kgmm.model.int8_dynamic)"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict()
        config["heads"] = {task: head_config(head) for task, head in self.heads.items()}
        if "text" in self.encoders:
            self.encoders["text"].save_architecture(directory / TEXT_FOLDER)
        (directory / CONFIG_FILE).write_text(
            json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        )
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(_unshared(state), str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        if self.kg is not None:
            self.kg.save(directory / GRAPH_FILE)
        if self.adapter is not None:
            (directory / ADAPTER_CONFIG_FILE).write_text(
                json.dumps(self.adapter.config.to_dict(), indent=2) + "\n"
            )

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "FusedModel":
        """Load a folder written by :meth:`save_pretrained` (safetensors only: no code runs)."""
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / name).exists():
                raise CheckpointError(f"{directory}: missing {name}; is this a kgmm checkpoint?")
        config = FusedConfig.load(directory / CONFIG_FILE)
        if config.text is not None:
            config.text = {
                **config.text,
                "model_name_or_path": str(directory / TEXT_FOLDER),
                "random_init": True,
            }
        kg = (
            KnowledgeGraph.load(directory / GRAPH_FILE)
            if (directory / GRAPH_FILE).exists()
            else None
        )
        state = load_file(str(directory / WEIGHTS_FILE))
        if "entity_table" in state:  # the saved vectors replace whatever the source made
            config.entity_embeddings.source = "random"
            config.entity_embeddings.dim = state["entity_table"].shape[1]
        model = cls(config, kg=kg)
        if (directory / ADAPTER_CONFIG_FILE).exists():
            adapter = json.loads((directory / ADAPTER_CONFIG_FILE).read_text())
            model.add_adapter(AdapterConfig.from_dict(adapter))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not _tied(model, k, state)]:
            raise CheckpointError(
                f"{directory / WEIGHTS_FILE} does not match the config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        model.eval()
        return model


def _entity_table(
    config: FusedConfig, kg: KnowledgeGraph | None, embeddings: EntityEmbeddings | None
) -> torch.Tensor | None:
    if kg is None:
        return None
    if embeddings is not None:
        embeddings.check_graph(kg)
        return embeddings.vectors.clone()
    source = config.entity_embeddings.source
    if source == "text":
        return EntityEmbeddings.from_text(kg).vectors.clone()
    if source == "random":
        generator = torch.Generator().manual_seed(config.seed)
        dim = config.entity_embeddings.dim
        return torch.randn(kg.num_entities, dim, generator=generator) / dim**0.5
    raise ConfigError(
        "entity_embeddings.source is 'structure': pass entity_embeddings= "
        "(e.g. kgmm.train_kg_embeddings(kg))"
    )


def _head_output(output: ModelOutput):
    from kgmm.heads.base import HeadOutput

    return HeadOutput(logits=output.logits, loss=output.loss, predictions=output.predictions)


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop tensors that alias an earlier one (tied weights); safetensors refuses them."""
    seen: dict[tuple[int, int], str] = {}
    kept = {}
    for name, tensor in state.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen and tensor.numel() > 0:
            continue
        seen[key] = name
        kept[name] = tensor
    return kept


def _tied(model: nn.Module, name: str, state: dict[str, torch.Tensor]) -> bool:
    """Whether parameter ``name`` shares storage with a tensor that was loaded."""
    tensor = model.state_dict()[name]
    return any(
        tensor.untyped_storage().data_ptr() == other.untyped_storage().data_ptr()
        for key, other in model.state_dict().items()
        if key in state and key != name
    )
