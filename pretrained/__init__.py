"""Shipped pretrained models: weights, dict.txt and model cards, read through bartsmiles.model.checkpoint."""
