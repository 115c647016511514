"""Models from backbones: the builder, reuse of a source model, dropout insertion,
freeze plans and layer presets."""
