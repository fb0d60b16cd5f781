"""Evaluation: the protocol benchmark and its reports, the ECFP4 + random-forest peer, frozen
features, the neuron probe, retrosynthesis top-k, the main job and the machine record."""
