"""PubMedQA PQA-L (Jin et al. 2019): ``ori_pqal.json`` + ``test_ground_truth.json``.

Each sample is ``{"id": PMID, "text": (question, context), "answer": yes|no|maybe}`` where
the context is the abstract without its conclusion (the ``CONTEXTS`` sections joined). When
the file has the conclusion (``LONG_ANSWER``), the sample also carries it as ``long_answer``:
training questions may use it as extra supervision (the "reasoning-free" setting); a model
must never read it for a question it is scored on.
The official test set is the PMIDs of ``test_ground_truth.json``; the rest is for training
and model selection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kgmm.errors import DataError

QUESTIONS_FILE = "ori_pqal.json"
TEST_FILE = "test_ground_truth.json"


def load_pubmedqa(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """``(train_dev samples, test samples)``, each in file order; test answers come from
    ``test_ground_truth.json``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: PubMedQA folder not found (it needs {QUESTIONS_FILE})")
    questions = _read_object(folder / QUESTIONS_FILE)
    truth = _read_object(folder / TEST_FILE)
    path = folder / QUESTIONS_FILE
    samples = {pmid: _sample(path, pmid, entry) for pmid, entry in questions.items()}
    test = []
    for pmid, answer in truth.items():
        if pmid not in samples:
            raise DataError(f"{folder / TEST_FILE}: PMID {pmid} is not in {QUESTIONS_FILE}")
        if not isinstance(answer, str) or not answer:
            raise DataError(f"{folder / TEST_FILE}: PMID {pmid}: label must be a string")
        test.append({**samples[pmid], "answer": answer})
    train_dev = [sample for pmid, sample in samples.items() if pmid not in truth]
    return train_dev, test


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty JSON object keyed by PMID")
    return data


def _sample(path: Path, pmid: str, entry: Any) -> dict:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: PMID {pmid}: expected an object")
    question, contexts, answer = (entry.get(k) for k in ("QUESTION", "CONTEXTS", "final_decision"))
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{path}: PMID {pmid}: field 'QUESTION' must be a non-empty string")
    if not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise DataError(f"{path}: PMID {pmid}: field 'CONTEXTS' must be a list of strings")
    if not isinstance(answer, str) or not answer:
        raise DataError(f"{path}: PMID {pmid}: field 'final_decision' must be a string")
    sample = {"id": pmid, "text": (question, " ".join(contexts)), "answer": answer}
    long_answer = entry.get("LONG_ANSWER")
    if long_answer is not None:
        if not isinstance(long_answer, str):
            raise DataError(f"{path}: PMID {pmid}: field 'LONG_ANSWER' must be a string")
        sample["long_answer"] = long_answer
    return sample
