"""Uni-AT for atzoo: a ViT with six scenario class tokens and a mixture of attribute experts
(backbones ``vit-6tok`` and ``vit-1tok``), the SAID loss with hierarchical dynamic weighting
(loss ``said``) and the published recipe with its ablation variants (methods ``uniat*``)."""

__version__ = "0.1.0"
