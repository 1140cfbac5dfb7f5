"""The base of Accord's models: pydantic without the record of which fields the input named."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class LeanModel(BaseModel):
    """Keeps an empty ``model_fields_set``.

    Pydantic keeps, in every model instance, the set of the field names its input named; only
    ``exclude_unset`` and ``model_fields_set`` read it, and nothing in Accord does
    (``tests/unit/test_lean_models.py`` keeps it so). A case's state is some thirty models whose
    sets took 18 of the 40 KiB the state of a cached case costs the worker
    (``bench/README.md``, engine). An empty set remains, because pydantic adds to it when a
    field is assigned and copies it with the model.
    """

    def model_post_init(self, context: Any, /) -> None:
        object.__setattr__(self, "__pydantic_fields_set__", set())
