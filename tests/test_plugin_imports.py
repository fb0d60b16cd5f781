"""The plugin and the command line must import without RDKit, captum and matplotlib: the GPU images used
for pretraining lack them (shared/DEVICE.md), and the device kit runs `python -m bartsmiles.cli`."""
import subprocess
import sys

BLOCK_RDKIT = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rdkit", "captum", "matplotlib"):
            raise ImportError(name + " blocked for this test")
sys.meta_path.insert(0, _Block())
import bartsmiles.tasks, bartsmiles.training.pretraining, bartsmiles.cli.main
from bartsmiles.cli.parser import build_parser
build_parser().parse_args(['pretrain', '--data', 'x', '--cpu'])
from fairseq.tasks import TASK_REGISTRY
assert {"smiles_denoising", "smiles_property", "smiles_seq2seq"} <= set(TASK_REGISTRY)
print("ok")
"""


def test_plugin_imports_without_rdkit():
    proc = subprocess.run([sys.executable, "-c", BLOCK_RDKIT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")
