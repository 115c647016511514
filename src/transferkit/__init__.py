"""transferkit: fine-tune pretrained Keras 3 models with the regularization done right.

The public verbs are imported on first use, so that `import transferkit` (and
`transferkit --version`) does not pay for importing Keras and its backend.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AuditEntry": "transferkit.audits",
    "AuditMismatch": "transferkit.audits",
    "RegularizationAudit": "transferkit.audits",
    "audit": "transferkit.audits",
    "ConstraintAudit": "transferkit.audits",
    "ConstraintEntry": "transferkit.audits",
    "constrain": "transferkit.constraints",
    "get_constraint": "transferkit.constraints",
    "insert_dropout": "transferkit.insertion",
    "LayerPreset": "transferkit.presets",
    "get_preset": "transferkit.presets",
    "layer_preset": "transferkit.presets",
    "list_presets": "transferkit.presets",
    "BackboneConfig": "transferkit.backbones",
    "cut_model": "transferkit.backbones",
    "get_backbone_config": "transferkit.backbones",
    "keras_models_dir": "transferkit.backbones",
    "list_backbones": "transferkit.backbones",
    "load_backbone": "transferkit.backbones",
    "load_preset": "transferkit.backbones",
    "tokenize": "transferkit.backbones",
    "weights_available": "transferkit.backbones",
    "build": "transferkit.model",
    "compare": "transferkit.comparison",
    "read_variants": "transferkit.comparison",
    "write_report": "transferkit.report",
    "Diagnosis": "transferkit.diagnosis",
    "diagnose": "transferkit.diagnosis",
    "diagnose_run": "transferkit.diagnosis",
    "FeatureCache": "transferkit.features",
    "extract_features": "transferkit.features",
    "feature_extractor": "transferkit.features",
    "head_model": "transferkit.features",
    "FineTuner": "transferkit.recipe",
    "Phase": "transferkit.recipe",
    "default_recipe": "transferkit.recipe",
    "freeze": "transferkit.freezing",
    "reuse": "transferkit.transfer",
    "train": "transferkit.training",
    "cross_validate": "transferkit.crossval",
    "LinearHead": "transferkit.linear",
    "load_run": "transferkit.inference",
    "predict": "transferkit.inference",
    "evaluate": "transferkit.inference",
    "mc_dropout_predict": "transferkit.inference",
    "MCDropoutPrediction": "transferkit.inference",
    "LRFinder": "transferkit.lr_finder",
    "find_learning_rate": "transferkit.lr_finder",
    "lr_find": "transferkit.lr_finder",
    "get_optimizer": "transferkit.optimizers",
    "discriminative": "transferkit.optimizers",
    "block_multipliers": "transferkit.optimizers",
    "get_schedule": "transferkit.schedules",
    "scan_image_folder": "transferkit.data",
    "load_images": "transferkit.data",
    "get_augmentation": "transferkit.data",
    "TransferkitError": "transferkit.errors",
    "get_penalty": "transferkit.penalties",
    "regularize": "transferkit.regularization",
    "load_model": "transferkit.saving",
    "save_model": "transferkit.saving",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transferkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
