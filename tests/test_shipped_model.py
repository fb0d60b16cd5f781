"""The shipped model in pretrained/: it loads with one call, describes itself, and denoises.

The denoising check can fail: a broken or untrained export scores ~8 bits/token here, while the
shipped model must reconstruct masked SMILES far better than that.
"""

import numpy as np
import pytest
import torch

import bartsmiles
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.model.checkpoint import read_metadata
from bartsmiles.model.resolve import shipped_model_dir

SHIPPED = shipped_model_dir()
pytestmark = pytest.mark.skipif(not (SHIPPED / "model.pt").is_file(), reason="no shipped model.pt")

SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "O=[N+]([O-])c1ccc(Cl)cc1",
    "CCOC(=O)c1ccc(N)cc1",
    "Cc1ccc(S(=O)(=O)N)cc1",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return bartsmiles.load_pretrained()


def test_metadata_describes_the_model(model):
    meta = read_metadata(SHIPPED / "model.pt")
    assert meta["arch"] == "bartsmiles_small"
    assert meta["tokenizer"] == "regex"
    assert meta["vocabulary"] == Vocabulary.load(SHIPPED / "dict.txt").symbols
    assert {"bartsmiles", "fairseq", "torch"} <= set(meta["versions"])
    assert model.max_positions == 128 and model.embedding_dim == 256


def test_encode_gives_finite_features_in_input_order(model):
    x = model.encode(SMILES, batch_size=4, progress=False)
    assert x.shape == (len(SMILES), 256) and np.isfinite(x).all()
    single = model.encode([SMILES[3]], progress=False)
    np.testing.assert_allclose(single[0], x[3], atol=1e-4)


@torch.no_grad()
def test_reconstructs_masked_smiles(model):
    """Teacher-forced cross-entropy of the clean target given a 30%-masked source."""
    rng = np.random.default_rng(0)
    task, net = model.task, model.model
    mask, eos = task.source_dictionary.index("<mask>"), task.source_dictionary.eos()
    losses = []
    for ids in model.encode_ids(SMILES):
        src = list(ids)
        for i in rng.choice(np.arange(1, len(ids) - 1), size=max(1, int(0.3 * (len(ids) - 2))), replace=False):
            src[i] = mask
        prev = [eos] + list(ids[:-1])
        logits, _ = net(torch.tensor([src]), torch.tensor([len(src)]), torch.tensor([prev]))
        lprobs = torch.log_softmax(logits.float(), -1)[0]
        nll = -lprobs[torch.arange(len(ids)), torch.tensor(ids)].mean().item()
        losses.append(nll / np.log(2))
    mean_bits = float(np.mean(losses))
    assert mean_bits < 2.0, f"shipped model denoises poorly: {mean_bits:.2f} bits/token"
