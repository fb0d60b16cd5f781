"""Named BART shapes for SMILES, registered on fairseq's ``bart`` model.

All shapes use 128 positions (BOS + 126 tokens + EOS), as the published BARTSmiles did, and
fairseq's BART conventions: learned positions, shared input/output embeddings, GELU, a layer
norm on the embeddings.  Any field can still be overridden on the command line
(``--encoder-layers 3``), as with every fairseq architecture.

=================  ========  ======  =====  =====  ===========================================
name               layers    d       heads  FFN    use
=================  ========  ======  =====  =====  ===========================================
bartsmiles_tiny    2 + 2     64      4      256    tests (~0.1M parameters)
bartsmiles_mini    3 + 3     128     4      512    CPU proxy for comparing objectives at equal compute
bartsmiles_small   4 + 4     256     8      1024   the shipped default; CPU fine-tuning in minutes
bartsmiles_base    6 + 6     768     12     3072   bart_base shape
bartsmiles_large   12 + 12   1024    16     4096   the published BARTSmiles shape (~400M)
=================  ========  ======  =====  =====  ===========================================
"""
from __future__ import annotations

from dataclasses import dataclass

from fairseq.models import register_model_architecture
from fairseq.models.bart.model import bart_large_architecture

MAX_POSITIONS = 128


@dataclass(frozen=True)
class Shape:
    layers: int
    dim: int
    heads: int
    ffn: int
    positions: int = MAX_POSITIONS


SHAPES: dict[str, Shape] = {
    "bartsmiles_tiny": Shape(layers=2, dim=64, heads=4, ffn=256),
    "bartsmiles_mini": Shape(layers=3, dim=128, heads=4, ffn=512),
    "bartsmiles_small": Shape(layers=4, dim=256, heads=8, ffn=1024),
    "bartsmiles_base": Shape(layers=6, dim=768, heads=12, ffn=3072),
    "bartsmiles_large": Shape(layers=12, dim=1024, heads=16, ffn=4096),
}


def _apply_shape(args, shape: Shape) -> None:
    """Fill ``args`` with the shape, keeping anything the user already set."""
    defaults = {
        "encoder_layers": shape.layers,
        "decoder_layers": shape.layers,
        "encoder_embed_dim": shape.dim,
        "decoder_embed_dim": shape.dim,
        "encoder_attention_heads": shape.heads,
        "decoder_attention_heads": shape.heads,
        "encoder_ffn_embed_dim": shape.ffn,
        "decoder_ffn_embed_dim": shape.ffn,
        "max_source_positions": shape.positions,
        "max_target_positions": shape.positions,
    }
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    bart_large_architecture(args)


def _register(name: str, shape: Shape) -> None:
    def arch(args, _shape=shape):
        _apply_shape(args, _shape)

    arch.__name__ = f"{name}_architecture"
    arch.__doc__ = f"{name}: {shape.layers}+{shape.layers} layers, d={shape.dim}, {shape.heads} heads, FFN {shape.ffn}."
    register_model_architecture("bart", name)(arch)


for _name, _shape in SHAPES.items():
    _register(_name, _shape)
