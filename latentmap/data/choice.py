"""Which dataset to evaluate models on when the user names none: the one they were trained on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from latentmap.errors import ConfigError

FALLBACK_DATASET = "fashion-mnist"


def dataset_for(models: Iterable[Any], spec: str | None = None) -> tuple[str, list[str]]:
    """(dataset spec, warnings): ``spec`` if given, else the dataset the models' checkpoints record.

    Models trained on different datasets need an explicit ``spec``; models that record none
    (pickles, py: specs) fall back to Fashion-MNIST, with a note. A given ``spec`` that differs
    from what a model was trained on is allowed, with a warning.
    """
    recorded = {m.name: m.metadata.get("dataset") for m in models}
    known = {name: d for name, d in recorded.items() if d}
    notes: list[str] = []
    if spec is None:
        choices = sorted(set(known.values()))
        plain = {c.partition("?")[0] for c in choices}
        if len(choices) > 1 and len(plain) == 1 and next(iter(plain)) in choices:
            # variants of one dataset (fashion-mnist and fashion-mnist?pad=2): the plain one; an image transform
            # turns its images into each model's shape
            spec = next(iter(plain))
            notes.append(f"the models were trained on variants of {spec} ({', '.join(choices)}); evaluating on "
                         f"{spec} (choose another with --dataset)")
            return spec, notes + [f"model '{name}' was trained on {d}, evaluated here on {spec}"
                                  for name, d in known.items() if d != spec]
        if len(choices) > 1:
            raise ConfigError("the models were trained on different datasets ("
                              + ", ".join(f"{n}: {d}" for n, d in known.items()) + "); choose one with --dataset")
        if choices:
            return choices[0], notes
        notes.append(f"no model records its training dataset; using {FALLBACK_DATASET} (choose one with --dataset)")
        return FALLBACK_DATASET, notes
    for name, trained_on in known.items():
        if trained_on != spec:
            notes.append(f"model '{name}' was trained on {trained_on}, evaluated here on {spec}")
    return spec, notes
