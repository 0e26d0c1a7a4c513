"""A frozen model's fitting net drawn afresh over its trained descriptor: the start of a committee member that
is to learn from another member's representation without becoming its copy.

``dp --tf train --init-frz-model`` initialises every network of the new model from the frozen one's constants
(deepmd-kit's ``init_variables``). :func:`fresh_fitting_net` writes a copy of a frozen model whose fitting-net
constants (deepmd-kit's :data:`~deepmd.tf.env.FITTING_NET_PATTERN`: matrices, biases and timestep weights of
every fitting layer) are replaced by a draw from the distributions deepmd-kit itself initialises them from
(``deepmd.tf.utils.network.one_layer``), so the member trained from it starts with the descriptor (embedding
nets and their statistics) and the energy bias of the model it came from, and a fitting net of its own seed.

Pure science, no FireWorks and no database.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from firegen.workflows.steps import StepError

#: Standard deviation of deepmd-kit's initial timestep weights (``idt``, resnet_dt layers) and their mean.
IDT_STDDEV, IDT_MEAN = 0.001, 0.1


class FittingResetError(StepError):
    """The frozen model has no fitting net firegen can redraw (not a TensorFlow deepmd-kit energy model)."""


def fresh_fitting_net(frozen: Path, out: Path, seed: int) -> dict[str, tuple[int, ...]]:
    """Write ``frozen`` to ``out`` with its fitting net drawn afresh from ``seed``; every other constant
    (descriptor, statistics, energy bias, the stored training script) is copied as it is.

    The draws follow deepmd-kit's initialisers: a layer's matrix from N(0, 1/sqrt(n_in + n_out)), its bias
    from N(0, 1) (the final layer's too: deepmd-kit keeps the atomic energy bias apart, in
    ``fitting_attr/t_bias_atom_e``), and its timestep weights from N(0.1, 0.001).

    Args:
        frozen: a ``.pb`` written by ``dp --tf freeze``.
        out: where the copy goes.
        seed: seeds the draw (the member's own training seed).

    Returns:
        the redrawn constants' names and shapes.

    Raises:
        FittingResetError: no fitting-net constant was found in ``frozen``.
    """
    from deepmd.tf.env import FITTING_NET_PATTERN, tf
    from deepmd.tf.utils.graph import load_graph_def

    _, graph_def = load_graph_def(str(frozen))
    pattern = re.compile(FITTING_NET_PATTERN)
    rng = np.random.default_rng(seed)
    redrawn: dict[str, tuple[int, ...]] = {}
    for node in sorted(graph_def.node, key=lambda n: n.name):  # a fixed order, so one seed gives one draw
        if node.op != "Const" or pattern.fullmatch(node.name) is None:
            continue
        old = tf.make_ndarray(node.attr["value"].tensor)
        kind = node.name.rsplit("/", 1)[-1]
        if kind == "matrix":
            new = rng.normal(0.0, 1.0 / np.sqrt(old.shape[0] + old.shape[1]), old.shape)
        elif kind == "bias":
            new = rng.normal(0.0, 1.0, old.shape)
        else:  # idt
            new = rng.normal(IDT_MEAN, IDT_STDDEV, old.shape)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(new.astype(old.dtype), shape=old.shape))
        redrawn[node.name] = tuple(old.shape)
    if not redrawn:
        raise FittingResetError(f"{frozen}: no fitting-net constant matches deepmd-kit's FITTING_NET_PATTERN; "
                                "is it a frozen TensorFlow energy model (dp --tf freeze)?")
    Path(out).write_bytes(graph_def.SerializeToString())
    return redrawn
