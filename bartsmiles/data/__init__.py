"""Data: the dataset registry (``resources/datasets.json``), locating and verified downloading of
files, loading tables as :class:`~bartsmiles.data.datasets.MolDataset`, the data summary of the
main job, and the data-trust report (:mod:`bartsmiles.data.audit`).  No torch, no fairseq."""
