"""Data: the dataset registry (``resources/datasets.json``), locating and verified downloading of
files, loading tables as :class:`~bartsmiles.data.datasets.MolDataset`, and the data summary of the
main job.  No torch, no fairseq."""
