"""`--finetuned_model`: the task's labels matched to a fine-tuned model's head.

The task's class i is the head's class `order[i]`. Labels named alike are matched by name
(MNLI's contradiction, entailment, neutral against a model's entailment, neutral,
contradiction), Transformers' default names (LABEL_0, ...) by index, and a task whose
labels are the class indices "0", "1", ... (SST-2, QQP, ...) by index too, taking the
model's names for its predictions and exports. Anything else is a one-line error.
"""
from __future__ import annotations

import dataclasses

from absl import logging

from power_bert_tf.data.tasks import CustomTaskSpec, Task
from power_bert_tf.errors import PowerBertError
from power_bert_tf.weights.finetuned import ClassifierHead


@dataclasses.dataclass(frozen=True)
class ImportedModel:
    """A fine-tuned head and, for each of the task's classes, the head's class index."""

    head: ClassifierHead
    order: tuple[int, ...]


def custom_spec_for(spec: CustomTaskSpec | None, head: ClassifierHead) -> CustomTaskSpec | None:
    """A custom task without --labels takes the model's: its `id2label` names (or
    regression for a regression model)."""
    if spec is None or spec.labels is not None or head.labels is None:
        return spec
    return dataclasses.replace(spec, labels=head.labels)


def _listed(labels: tuple[str, ...]) -> str:
    return ", ".join(labels)


def match_task(task: Task, head: ClassifierHead) -> tuple[Task, ImportedModel]:
    """(the task, with the model's label names where the task's are class indices; the
    head matched to it). A one-line `PowerBertError` when they disagree."""
    source = f"--finetuned_model {head.source}"
    if head.labels is None or task.labels is None:
        if head.labels is None and task.labels is not None:
            raise PowerBertError(f"{source} is a regression model (one output) but task "
                                 f"{task.name} has labels {_listed(task.labels)}")
        if head.labels is not None:
            raise PowerBertError(f"{source} classifies into {_listed(head.labels)} but task "
                                 f"{task.name} is a regression task")
        return task, ImportedModel(head, (0,))
    if len(head.labels) != len(task.labels):
        raise PowerBertError(f"{source} has {len(head.labels)} labels "
                             f"({_listed(head.labels)}) but task {task.name} has "
                             f"{len(task.labels)} ({_listed(task.labels)})")
    identity = tuple(range(len(task.labels)))
    if not head.named:
        return task, ImportedModel(head, identity)
    if set(head.labels) == set(task.labels):
        order = tuple(head.labels.index(label) for label in task.labels)
        if order != identity:
            logging.info("%s: labels %s reordered to the task's %s", source,
                         _listed(head.labels), _listed(task.labels))
        return task, ImportedModel(head, order)
    if task.labels == tuple(str(index) for index in identity):
        return dataclasses.replace(task, labels=head.labels), ImportedModel(head, identity)
    raise PowerBertError(f"{source} has labels {_listed(head.labels)} but task {task.name} "
                         f"has {_listed(task.labels)}: the names differ")
