"""Root-aligned SMILES (bartsmiles.core.reactions) and atom mapping (bartsmiles.data.atom_mapping)."""
from __future__ import annotations

import csv
import json

import pytest
from rdkit import Chem

from bartsmiles.core.chem import canonicalize, canonicalize_set
from bartsmiles.core.reactions import align_reaction, edit_distance, product_roots, split_mapped_reaction
from bartsmiles.errors import Seq2SeqDataError

# Two real USPTO-50k reactions (Liu split, train lines 1 and 4), atom-mapped by Indigo.
MAPPED = [
    "CS(O[CH2:6][C@@H:7]1[O:12][C:10](=[O:11])[CH2:9][CH2:8]1)(=O)=O.[F:13][c:14]1[c:45]([Cl:46])[cH:44][c:17]"
    "([NH:18][c:19]2[c:43]3[c:23]([cH:24][c:25]([c:35]([cH:42]3)[O:36][CH:37]3[CH2:41][CH2:40][CH2:39][CH2:38]3)"
    "[O:26][CH2:27][CH2:28][N:29]3[CH2:34][CH2:33][NH:32][CH2:31][CH2:30]3)[n:22][cH:21][n:20]2)[cH:16][cH:15]1>>"
    "[O:11]=[C:10]1[O:12][C@@H:7]([CH2:6][N:32]2[CH2:33][CH2:34][N:29]([CH2:28][CH2:27][O:26][c:25]3[c:35]([O:36]"
    "[CH:37]4[CH2:41][CH2:40][CH2:39][CH2:38]4)[cH:42][c:43]4[c:23]([n:22][cH:21][n:20][c:19]4[NH:18][c:17]4[cH:44]"
    "[c:45]([Cl:46])[c:14]([F:13])[cH:15][cH:16]4)[cH:24]3)[CH2:30][CH2:31]2)[CH2:8][CH2:9]1",
    "C[O:2][C:3]([c:5]1[s:23][cH:22][c:7]([CH2:8][CH2:9][CH2:10][c:11]2[nH:21][c:20]3[c:13]([c:14]([nH:16][c:17]"
    "([n:19]3)[NH2:18])=[O:15])[cH:12]2)[cH:6]1)=[O:4]>>[NH2:18][c:17]1[nH:16][c:14](=[O:15])[c:13]2[c:20]([nH:21]"
    "[c:11]([cH:12]2)[CH2:10][CH2:9][CH2:8][c:7]2[cH:6][c:5]([C:3]([OH:2])=[O:4])[s:23][cH:22]2)[n:19]1",
]


def _unmapped(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return Chem.MolToSmiles(mol)


@pytest.mark.parametrize("reaction", MAPPED)
def test_every_root_gives_the_same_molecules_without_maps(reaction):
    reactants, product = split_mapped_reaction(reaction)
    n = Chem.MolFromSmiles(product).GetNumAtoms()
    for root in [-1, *range(n)]:
        pair = align_reaction(reactants, product, root)
        assert ":" not in pair.product and ":" not in pair.reactants
        assert canonicalize(pair.product) == canonicalize(_unmapped(product))
        assert canonicalize_set(pair.reactants) == canonicalize_set(_unmapped(reactants))
        assert pair.aligned == 1 + ("." in reactants and reaction is MAPPED[0])
        if root >= 0:  # the product starts at the root, and so does the reactant that holds its atom
            first = Chem.MolFromSmiles(product).GetAtomWithIdx(root).GetSymbol()
            assert pair.product.lstrip("[").upper().startswith(first.upper())


def test_alignment_brings_source_and_target_closer():
    for reaction in MAPPED:
        reactants, product = split_mapped_reaction(reaction)
        pair = align_reaction(reactants, product, -1)
        canonical = edit_distance(canonicalize(_unmapped(product)), canonicalize_set(_unmapped(reactants)))
        assert edit_distance(pair.product, pair.reactants) < canonical
    # the leaving-group reactant follows the product: the lactone side starts both strings
    pair = align_reaction(*split_mapped_reaction(MAPPED[0]), -1)
    assert pair.product.startswith("O=C1CC[C@H](C") and pair.reactants.startswith("O=C1CC[C@H](C")


def test_roots_edit_distance_and_bad_input():
    assert product_roots(3, 1) == [-1]
    roots = product_roots(3, 6, seed=1)
    assert roots[0] == -1 and sorted(roots[:4]) == [-1, 0, 1, 2] and roots[4:] == roots[:2]
    assert product_roots(3, 4, seed=1) == product_roots(3, 4, seed=1)
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], ["a"]) == 1
    with pytest.raises(Seq2SeqDataError, match="not a reaction"):
        split_mapped_reaction("CCO")
    reactants, product = split_mapped_reaction(MAPPED[1])
    with pytest.raises(Seq2SeqDataError, match="root 99"):
        align_reaction(reactants, product, 99)
    with pytest.raises(Seq2SeqDataError, match="product"):
        align_reaction(reactants, "C1CC", -1)


def test_prepare_retro_maps_caches_and_writes_aligned_pairs(tmp_path, capsys):
    pytest.importorskip("indigo", reason="atom mapping needs the 'retro' extra (epam.indigo)")
    from bartsmiles.cli.main import main
    from bartsmiles.data.atom_mapping import map_reactions

    lines = [f"{_unmapped(r.split('>>')[1])} >> {_unmapped(r.split('>>')[0])}" for r in MAPPED]
    source = tmp_path / "src"
    source.mkdir()
    (source / "retrosynthesis-train.smi").write_text("\n".join(lines + ["CCO >> [Na+].[Cl-]"]) + "\n")
    (source / "retrosynthesis-valid.smi").write_text(lines[1] + "\n")
    (source / "retrosynthesis-test.smi").write_text(lines[0] + "\n")
    out = tmp_path / "out"
    assert main(["prepare-retro", str(out), "--source", str(source), "--k-train", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mapped"]["train"] == 2 and report["pairs_written"] == {"train": 9, "valid": 1, "test": 1}
    assert [u["line"] for u in report["unmapped"]["train"]] == [3]  # no product atom comes from the reactants
    ed = report["edit_distance"]["train"]
    assert ed["root_aligned"] < ed["canonical"]
    with open(out / "train.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9
    for i, line in enumerate(lines):
        product, reactants = (x.strip() for x in line.split(">>"))
        views = rows[3 * i: 3 * i + 3]
        assert {canonicalize(v["source"]) for v in views} == {canonicalize(product)}
        assert {canonicalize_set(v["target"]) for v in views} == {canonicalize_set(reactants)}
    assert rows[6:] == [{"source": "CCO", "target": "[Na+].[Cl-]"}] * 3  # unmapped: the canonical pair, k times
    # the maps are cached: a second run maps nothing (a cache row changed by hand is kept)
    cache = out / "maps" / "train.csv"
    text = cache.read_text()
    cache.write_text(text.replace("no product atom was mapped", "edited"))
    again = map_reactions([tuple(x.strip() for x in l.split(">>")) for l in lines + ["CCO >> [Na+].[Cl-]"]],
                          cache, progress=False)
    assert again[2] == ("", "edited")
    # two worker processes map the same as one, in input order
    pairs = [tuple(x.strip() for x in l.split(">>")) for l in lines]
    one = map_reactions(pairs, tmp_path / "one.csv", progress=False)
    two = map_reactions(pairs * 2, tmp_path / "two.csv", workers=2, chunk=1, progress=False)
    assert two == one * 2 and all(m for m, _ in one)
    assert main(["prepare-retro", str(out), "--source", str(tmp_path / "nowhere")]) == 2
