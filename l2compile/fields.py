"""The field types a spec is written in, shared by the spec and the layer kinds.

Each type checks one value on its own; what depends on several fields is
checked while planning.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)


class StrictModel(BaseModel):
    """Unknown fields are errors; a spec is never silently half-read.

    Values are taken as YAML typed them: `units: true` or `units: "10"` is an
    error, not 1 or 10 (an int is still a fine float).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def unique(value: list[str]) -> list[str]:
    """A list's values, each at most once (an error names the first repeated)."""
    repeated = sorted({f for f in value if value.count(f) > 1})
    if repeated:
        raise ValueError(f"{repeated[0]!r} is listed more than once")
    return value


def _check_identifier(value: str) -> str:
    if (
        not value
        or not (value[0].isascii() and value[0].isalpha())
        or not all(
            c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in value
        )
    ):
        raise ValueError(
            "must be lowercase letters, digits and underscores, starting with a "
            "letter (it becomes a Python name)"
        )
    if keyword.iskeyword(value):
        raise ValueError(f"{value!r} is a Python keyword")
    return value


def is_identifier(value: object) -> bool:
    """Whether `value` is a valid Identifier (a name a spec may give)."""
    try:
        return (
            isinstance(value, str)
            and len(value) <= 64
            and bool(_check_identifier(value))
        )
    except ValueError:
        return False


Identifier = Annotated[
    str, Field(min_length=1, max_length=64), AfterValidator(_check_identifier)
]
PositiveInt = Annotated[int, Field(gt=0, le=2**53)]  # size limits: plan.MAX_PARAMS
L2Coefficient = Annotated[float, Field(ge=0, allow_inf_nan=False)]

Activation = Literal[
    "linear",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "mish",
    "sigmoid",
    "hard_sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "softplus",
    "softsign",
    "exponential",
]


def pair(value: Any) -> Any:
    """`3` means `(3, 3)`: Keras' own shorthand for 2-D sizes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    return tuple(value) if isinstance(value, list) else value


_POSITIVE = {"type": "integer", "exclusiveMinimum": 0}
Pair = Annotated[
    tuple[PositiveInt, PositiveInt],
    BeforeValidator(pair),
    # Editors should accept `3` as well as `[3, 3]`, as the validator does.
    WithJsonSchema(
        {
            "anyOf": [
                _POSITIVE,
                {"type": "array", "items": _POSITIVE, "minItems": 2, "maxItems": 2},
            ]
        }
    ),
]
Padding = Literal["valid", "same"]
Rate = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
Epsilon = Annotated[float, Field(gt=0, allow_inf_nan=False)]
