"""Masked multi-task loss and metrics: each image counts only for the tasks it belongs to.

The pipeline yields ``(images, labels, weights)`` with ``weights[task]`` of shape ``(batch,)``:
1 when the image's disease is in the task, else 0 (an eczema image belongs to two tasks, every
other disease to one). Keras 3 routes a dict of sample weights to the output of the same name,
both for the losses and for the ``weighted_metrics``, so no custom loss class is needed.

What the loss means (``reduction="mean_with_sample_weight"``, the default)::

    loss = Σ_task  Σ_i m_ti · BCE(y_ti, p_ti) / Σ_i m_ti   +   L2 terms

the mean binary cross-entropy over the batch images that belong to each task, summed over the
tasks; a task with no image in the batch adds 0. Each task's term stays on the same scale
whatever the mix of diseases in a batch, as with the per-output sample weighting of Keras up to
2.2 (the study's era), which divided a weighted loss by the number of non-zero weights. Keras'
own default, ``"sum_over_batch_size"``, divides by the whole batch size instead, so tasks with
few images in a batch get proportionally less weight; ``reduction="sum_over_batch_size"``
selects it.
"""

import keras
import tensorflow as tf

from skin_cnn.core.tasks import TASK_NAMES

REDUCTIONS = ("mean_with_sample_weight", "sum_over_batch_size")


def masked_task_losses(tasks=TASK_NAMES, reduction="mean_with_sample_weight"):
    """One binary cross-entropy per task, reduced as described in the module docstring."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    return {
        task: keras.losses.BinaryCrossentropy(reduction=reduction, name=f"{task}_loss")
        for task in tasks
    }


def masked_task_metrics(tasks=TASK_NAMES, num_thresholds=200):
    """Per-task AUC and accuracy, meant for ``weighted_metrics`` so the masks apply.

    Keras 3 passes sample weights only to ``weighted_metrics``; as plain ``metrics`` these
    would count images of other tasks with their placeholder label 0. Keras prefixes each name
    with the output's, giving e.g. ``acne_vs_rosacea_auc`` (``val_acne_vs_rosacea_auc`` on the
    validation set).
    """
    return {
        task: [
            keras.metrics.AUC(num_thresholds=num_thresholds, name="auc"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
        ]
        for task in tasks
    }


def _trains_in_float16(model):
    """True when a trainable layer computes in float16, whose small gradients need loss scaling.

    (bfloat16 has float32's exponent range and needs none.)
    """
    from skin_cnn.models.precision_policy import trunk_layers

    return any(layer.trainable_weights and layer.dtype_policy.compute_dtype == "float16"
               for layer in trunk_layers(model))


def compile_model(
    model,
    optimizer="adam",
    learning_rate=1e-4,
    reduction="mean_with_sample_weight",
    num_thresholds=200,
    jit_compile=None,
    **compile_kwargs,
):
    """Compile ``model`` with the masked per-task losses and masked per-task metrics.

    Parameters
    ----------
    model : keras.Model
        A model from :func:`skin_cnn.models.build_model` (or its ``head_model`` split), whose
        outputs are named after the tasks.
    optimizer : str or keras.optimizers.Optimizer
        An optimizer name (``"adam"``, ``"sgd"``, …), built with ``learning_rate``, or an
        instance used as is (``learning_rate`` is then ignored).
    learning_rate : float
        The study's predecessor used Adam at 2e-5; heads on a frozen trunk tolerate ~1e-4.
    reduction : {"mean_with_sample_weight", "sum_over_batch_size"}
        How each task's masked loss is averaged (module docstring).
    num_thresholds : int
        Thresholds of the streaming AUC estimate.
    jit_compile : bool or "auto", optional
        XLA compilation. Default: ``"auto"`` (Keras' choice) when a GPU is visible, False on
        CPU, where XLA made VGG-16 training slower here (first step 20 s instead of 9 s to
        compile, then ~4× slower steps with a frozen trunk at 32×32).
    **compile_kwargs
        Passed to ``model.compile`` (``steps_per_execution``, ``loss_weights`` …).

    Returns
    -------
    keras.Model
        The same model, compiled.
    """
    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(
            {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
        )
    if _trains_in_float16(model) and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if jit_compile is None:
        jit_compile = "auto" if tf.config.list_physical_devices("GPU") else False
    tasks = [name for name in model.output_names if name in TASK_NAMES] or list(TASK_NAMES)
    model.compile(
        optimizer=optimizer,
        loss=masked_task_losses(tasks, reduction),
        weighted_metrics=masked_task_metrics(tasks, num_thresholds),
        jit_compile=jit_compile,
        **compile_kwargs,
    )
    return model
