"""In-model methods, one file each; importing this package registers them."""

from tokenzip.layers.methods import cls_attention, dart, fastv, pitome, random, tome, zero_tprune

__all__ = ["cls_attention", "dart", "fastv", "pitome", "random", "tome", "zero_tprune"]
