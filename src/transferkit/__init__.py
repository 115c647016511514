"""transferkit: fine-tune pretrained Keras 3 models with the regularization done right.

The public verbs are imported on first use, so that `import transferkit` (and
`transferkit --version`) does not pay for importing Keras and its backend.
"""

from transferkit._lazy import lazy_exports
from transferkit.version import __version__  # noqa: F401  (transferkit.__version__)

_EXPORTS = {
    "AuditEntry": "transferkit.regularizers.audits",
    "AuditMismatch": "transferkit.regularizers.audits",
    "RegularizationAudit": "transferkit.regularizers.audits",
    "audit": "transferkit.regularizers.audits",
    "ConstraintAudit": "transferkit.regularizers.audits",
    "ConstraintEntry": "transferkit.regularizers.audits",
    "constrain": "transferkit.regularizers.constraints",
    "get_constraint": "transferkit.regularizers.constraints",
    "insert_dropout": "transferkit.models.insertion",
    "LayerPreset": "transferkit.models.layer_presets",
    "get_preset": "transferkit.models.layer_presets",
    "get_layer_preset": "transferkit.models.layer_presets",
    "list_layer_presets": "transferkit.models.layer_presets",
    "layer_preset": "transferkit.models.layer_presets",
    "list_presets": "transferkit.models.layer_presets",
    "BackboneConfig": "transferkit.backbones",
    "cut_model": "transferkit.backbones",
    "get_backbone_config": "transferkit.backbones",
    "keras_models_dir": "transferkit.backbones",
    "list_backbones": "transferkit.backbones",
    "load_backbone": "transferkit.backbones",
    "load_preset": "transferkit.backbones",
    "tokenize": "transferkit.backbones",
    "weights_available": "transferkit.backbones",
    "build": "transferkit.models.model",
    "compare": "transferkit.workflows.compare",
    "read_variants": "transferkit.workflows.compare",
    "write_report": "transferkit.evaluation.report",
    "Diagnosis": "transferkit.evaluation.diagnosis",
    "diagnose": "transferkit.evaluation.diagnosis",
    "diagnose_run": "transferkit.evaluation.diagnosis",
    "FeatureCache": "transferkit.training.features",
    "extract_features": "transferkit.training.features",
    "feature_extractor": "transferkit.training.features",
    "head_model": "transferkit.training.features",
    "FineTuner": "transferkit.training.recipe",
    "BestWeights": "transferkit.training.callbacks",
    "PhaseSwitch": "transferkit.training.callbacks",
    "recompile": "transferkit.training.callbacks",
    "Phase": "transferkit.training.phases",
    "default_recipe": "transferkit.training.phases",
    "freeze": "transferkit.models.freezing",
    "reuse": "transferkit.models.transfer",
    "train": "transferkit.workflows.train",
    "TrainingConfig": "transferkit.training.config",
    "Trainer": "transferkit.training.trainer",
    "cross_validate": "transferkit.workflows.crossval",
    "LinearHead": "transferkit.training.linear",
    "load_run": "transferkit.evaluation.inference",
    "predict": "transferkit.evaluation.inference",
    "evaluate": "transferkit.evaluation.inference",
    "mc_dropout_predict": "transferkit.evaluation.inference",
    "MCDropoutPrediction": "transferkit.evaluation.inference",
    "LRFinder": "transferkit.optim.lr_finder",
    "find_learning_rate": "transferkit.optim.lr_finder",
    "lr_find": "transferkit.workflows.lr_find",
    "get_optimizer": "transferkit.optim.optimizers",
    "discriminative": "transferkit.optim.optimizers",
    "block_multipliers": "transferkit.optim.optimizers",
    "get_schedule": "transferkit.optim.schedules",
    "scan_image_folder": "transferkit.data",
    "load_images": "transferkit.data",
    "get_augmentation": "transferkit.data",
    "TransferkitError": "transferkit.errors",
    "get_penalty": "transferkit.regularizers.penalties",
    "regularize": "transferkit.regularizers.regularization",
    "load_model": "transferkit.evaluation.inference",
    "save_model": "transferkit.saving",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
