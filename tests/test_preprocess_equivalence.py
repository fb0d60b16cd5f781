"""`bartsmiles tokenize` + `fairseq-preprocess` is the documented equivalent of `bartsmiles preprocess`."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bartsmiles.cli.main import main

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_corpus.smi"
DICT = Path(__file__).resolve().parents[1] / "pretrained" / "dict.txt"


def test_tokenize_then_fairseq_preprocess_equals_bartsmiles_preprocess(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    (tmp_path / "tr.smi").write_text("\n".join(lines[:200]) + "\n")
    (tmp_path / "va.smi").write_text("\n".join(lines[200:240]) + "\n")
    for split in ("tr", "va"):
        assert main(["tokenize", str(tmp_path / f"{split}.smi"), "-o", str(tmp_path / f"{split}.tok"), "--workers", "1"]) == 0
    first = (tmp_path / "tr.tok").read_text().splitlines()[0]
    assert first.replace(" ", "") == lines[0]
    fairseq_preprocess = Path(sys.executable).with_name("fairseq-preprocess")
    if not fairseq_preprocess.exists():
        fairseq_preprocess = shutil.which("fairseq-preprocess")
    if not fairseq_preprocess:
        pytest.skip("fairseq-preprocess not on PATH")
    subprocess.run(
        [str(fairseq_preprocess), "--only-source", "--trainpref", str(tmp_path / "tr.tok"),
         "--validpref", str(tmp_path / "va.tok"), "--srcdict", str(DICT), "--destdir", str(tmp_path / "fs"),
         "--workers", "1", "--dataset-impl", "mmap"],
        check=True, capture_output=True,
    )
    assert main(["preprocess", "--train", str(tmp_path / "tr.smi"), "--valid", str(tmp_path / "va.smi"),
                 "--vocab", str(DICT), "--dest", str(tmp_path / "bs"), "--workers", "1"]) == 0
    for name in ("train.bin", "train.idx", "valid.bin", "valid.idx"):
        assert (tmp_path / "fs" / name).read_bytes() == (tmp_path / "bs" / name).read_bytes(), name
