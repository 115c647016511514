"""Models from backbones: the builder, reuse of a source model, dropout insertion,
freeze plans, LoRA adapters and layer presets."""
