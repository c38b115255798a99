"""The spoken/written digit loaders and the spoken_written_digits example."""

from __future__ import annotations

import gzip
import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import shared_dataset

import kgmm
from kgmm.data.digits import load_digit_images, load_fsdd

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "spoken_written_digits.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("spoken_written_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_wav(path: Path) -> None:
    soundfile.write(path, np.zeros(800, dtype=np.int16), 8000, subtype="PCM_16")


def write_digits(path: Path, rows: list[list[int]]) -> None:
    with gzip.open(path, "wt") as handle:
        handle.writelines(",".join(map(str, row)) + "\n" for row in rows)


def test_load_fsdd_splits_by_recording_index(tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for name in ("3_jackson_0.wav", "3_jackson_4.wav", "7_theo_5.wav", "0_theo_49.wav"):
        write_wav(recordings / name)
    train, test = load_fsdd(tmp_path)
    assert [s["index"] for s in test] == [0, 4]
    assert sorted((s["digit"], s["speaker"], s["index"]) for s in train) == [
        (0, "theo", 49),
        (7, "theo", 5),
    ]
    assert Path(test[0]["audio"]) == recordings / "3_jackson_0.wav"


def test_load_fsdd_rejects_malformed_names_and_missing_folders(tmp_path):
    write_wav(tmp_path / "3_jackson_0.wav")
    write_wav(tmp_path / "three-jackson.wav")
    with pytest.raises(kgmm.DataError, match=r"three-jackson\.wav.*\{digit\}_\{speaker\}"):
        load_fsdd(tmp_path)
    with pytest.raises(kgmm.DataError, match="does not exist"):
        load_fsdd(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(kgmm.DataError, match="no .wav recordings"):
        load_fsdd(tmp_path / "empty")


def test_load_digit_images_scales_pixels_to_unit_range(tmp_path):
    path = tmp_path / "digits.csv.gz"
    write_digits(path, [[16] * 64 + [3], [0] * 63 + [8, 9]])
    images, labels = load_digit_images(path)
    assert images.shape == (2, 8, 8) and images.dtype == np.float32
    assert images[0].min() == 1.0 and images[1, 7, 7] == 0.5
    assert labels.tolist() == [3, 9]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([0] * 64, r"digits\.csv\.gz:2: expected 65 comma-separated integers"),
        ([17] + [0] * 64, r"digits\.csv\.gz:2: pixel values must be integers 0-16"),
        (["x"] + [0] * 64, r"digits\.csv\.gz:2: expected integers"),
    ],
)
def test_load_digit_images_names_the_bad_line(tmp_path, row, message):
    path = tmp_path / "digits.csv.gz"
    write_digits(path, [[0] * 65, row])
    with pytest.raises(kgmm.DataError, match=message):
        load_digit_images(path)


def test_number_facts_follow_arithmetic(example):
    kg = example.number_facts_graph()
    facts = {
        (kg.entity(h).key, kg.relation(r), kg.entity(t).key) for h, r, t in kg.triples.tolist()
    }
    assert ("4", "successor_of", "3") in facts and ("3", "predecessor_of", "4") in facts
    assert ("7", "has_parity", "odd") in facts and ("7", "has_primality", "prime") in facts
    assert ("9", "has_primality", "composite") in facts
    assert kg.entity(kg.entity_id("seven")).key == "7"


def test_questions_are_balanced_true_and_drawn_from_one_split(example):
    recordings = [{"audio": f"{d}_a_{i}.wav", "digit": d} for d in range(10) for i in range(6)]
    labels = np.repeat(np.arange(10), 3)
    images = np.arange(30, dtype=np.float32)[:, None, None] * np.ones((30, 8, 8), np.float32)
    samples = example.question_samples(recordings, images, labels, seed=0)
    assert Counter(s["label"] for s in samples) == {"yes": 30, "no": 30}
    for sample in samples:
        truth = example.is_fact(sample["question"], sample["spoken"], sample["written"])
        assert sample["label"] == ("yes" if truth else "no")
        assert labels[int(sample["image"][0, 0])] == sample["written"]
        assert sample["audio"].startswith(f"{sample['spoken']}_")
    again = example.question_samples(recordings, images, labels, seed=0)
    fields = ("text", "audio", "label", "written")
    assert [[s[f] for f in fields] for s in samples] == [[s[f] for f in fields] for s in again]


def test_quick_run_beats_chance(example, tmp_path):
    data_dir = shared_dataset("fsdd").parent
    shared_dataset("digits_uci_sklearn")
    summary = example.main(["--quick", "--data-dir", str(data_dir), "--out", str(tmp_path)])
    assert summary["metrics"]["spoken_digit_accuracy"] > 0.3  # chance: 0.1
    assert (tmp_path / "results.json").is_file()
