"""The backbone planner: a pretrained model inside the spec's model."""

from __future__ import annotations

from l2compile.layers.backbone import role_of
from l2compile.layers.base import (
    INPUT,
)
from l2compile.nodes import (
    BackbonePlan,
    LayerPlan,
)
from l2compile.planners.context import Planner
from l2compile.planners.graph import _coefficient, reached_by_l2
from l2compile.recipes import SpecPath
from l2compile.sources.base import Source as Recipe


class BackbonePlanner(Planner):
    """The model's pretrained backbone: one at most, and its weights file."""

    def backbone(self, layers: list[LayerPlan], recipe: Recipe) -> BackbonePlan | None:
        """The model's pretrained backbone, if it has one (one at most); its
        weights file must exist and hold that model's weights."""
        found = [
            (i, layer, pretrained)
            for i, layer in enumerate(self.spec.layers)
            if (pretrained := layer.pretrained()) is not None
        ]
        for i, _, _ in found[1:]:
            self.error(
                ("layers", i, "type"),
                f"a model takes one backbone, and layer {found[0][0]} is one",
            )
        planned = {layer.index: layer for layer in layers}
        if not found or found[0][0] not in planned:
            return None
        i, spec_layer, pretrained = found[0]
        layer = planned[i]
        if recipe.encodes:
            self.error(
                ("layers", i, "type"),
                f"a backbone reads images, and recipe {recipe.name!r} gives table rows",
            )
            return None
        path = None
        if pretrained.weights_file is not None:
            path = SpecPath(
                f"layers[{i}].weights",
                self.source.file,
                pretrained.weights_file,
                self.folder,
            )
            problem = (
                pretrained.check_file(path.path)
                if path.path.is_file()
                else f"{path.path} is not a file (paths are relative to the "
                "spec's folder); write weights: imagenet for Keras' own"
            )
            if problem is not None:
                self.error(("layers", i, "weights"), problem)
        (source,) = layer.inputs
        shape = (
            self.spec.input.planned
            if source == INPUT
            else next(lay.output_shape for lay in layers if lay.name == source)
        )
        if (
            pretrained.weights == "none"
            and pretrained.trained_from is None
            and self.spec.train.initial_weights is None
        ):
            self.warn(
                ("layers", i, "weights"),
                "a frozen backbone with weights: none stays random: only the "
                "layers after it train, on features of random kernels, and such "
                "a model learns little or nothing; set trainable: true, or use "
                "weights: imagenet or a weights file",
            )
        layer_l2 = getattr(spec_layer, "l2", None)
        coefficient = self.spec.l2 if layer_l2 is None else layer_l2
        return BackbonePlan(
            layer=layer.name,
            model=pretrained.model,
            keras_class=pretrained.keras_class,
            input_shape=shape,
            weights=pretrained.weights,
            weights_path=path,
            rescaling=pretrained.rescaling,
            reads=pretrained.reads,
            own_preprocessing=pretrained.own_preprocessing,
            l2=_coefficient(coefficient, self.spec.l2) if coefficient > 0 else None,
            regularized=tuple(
                name
                for name in ("kernel", "bias", "gamma", "beta")
                if reached_by_l2(role_of(name), self.spec)
            ),
            trained_from=pretrained.trained_from,
        )
