"""Reference architectures written for prunec (random weights): tests, demos and benchmarks.

Installed as `prunec.zoo`. `ZOO` maps a name to a ZooEntry(build, example_inputs).
"""

from prunec.zoo import (  # noqa: F401  (each module registers its models)
    bert,
    char_gpt,
    convnext,
    densenet,
    digits_net,
    ghostnet,
    gpt2,
    inception,
    llama,
    mixer,
    mobilenet,
    regnet,
    repvgg,
    resnet,
    shufflenet,
    swin,
    unet,
    vgg,
    vit,
)
from prunec.zoo.registry import ZOO, ZooEntry, randomize_norms

__all__ = ["ZOO", "ZooEntry", "randomize_norms"]
