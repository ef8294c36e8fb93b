"""The multi-task classification heads on top of the pooled VGG-16 features.

As in the study's released inference code: a shared Dense 64 (ReLU, L2) and, per task, a
Dense 32 (ReLU, L2) and a Dense 1 sigmoid. The sigmoid layer of each task is named after the
task, so the model's output dict is keyed by ``skin_cnn.core.tasks.TASK_NAMES`` and Keras'
per-output losses, sample weights and metrics match by that name.
"""

import keras

from skin_cnn.core.tasks import TASK_NAMES

SHARED_DENSE = "shared_dense"
SHARED_DROPOUT = "shared_dropout"


def task_dense_name(task):
    """Name of a task's hidden Dense 32 layer."""
    return f"{task}_dense"


def _glorot(seed, offset):
    return keras.initializers.GlorotUniform(seed=None if seed is None else int(seed) + offset)


def multitask_heads(
    features, tasks=TASK_NAMES, dense_units=64, task_units=32, l2=5e-4, dropout=0.0, seed=None
):
    """Apply the shared dense layer and one sigmoid head per task to ``features``.

    Parameters
    ----------
    features : KerasTensor
        ``(batch, d)`` pooled trunk features.
    tasks : sequence of str
        Task names; each becomes an output.
    dense_units, task_units : int
        Units of the shared and of each task's hidden layer.
    l2 : float
        L2 factor on the kernels of the two hidden layers (not on the sigmoid layers, as in
        the released code).
    dropout : float
        Dropout rate after the shared layer; 0 adds no layer, giving the study's architecture.
    seed : int, optional
        Seed of the kernel initialisers (one offset per layer).

    Returns
    -------
    dict of str -> KerasTensor
        ``(batch, 1)`` probabilities of each task's positive class.
    """
    regularizer = keras.regularizers.L2(l2) if l2 else None
    x = keras.layers.Dense(
        dense_units,
        activation="relu",
        kernel_regularizer=regularizer,
        kernel_initializer=_glorot(seed, 100),
        name=SHARED_DENSE,
    )(features)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, name=SHARED_DROPOUT)(x)
    outputs = {}
    for i, task in enumerate(tasks):
        h = keras.layers.Dense(
            task_units,
            activation="relu",
            kernel_regularizer=regularizer,
            kernel_initializer=_glorot(seed, 101 + 2 * i),
            name=task_dense_name(task),
        )(x)
        outputs[task] = keras.layers.Dense(
            1,
            activation="sigmoid",
            kernel_initializer=_glorot(seed, 102 + 2 * i),
            name=task,
        )(h)
    return outputs
