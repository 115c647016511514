"""transferkit: fine-tune pretrained Keras 3 models with the regularization done right."""

__version__ = "0.1.0"

from transferkit.audit import AuditEntry, AuditMismatch, RegularizationAudit, audit
from transferkit.errors import TransferkitError
from transferkit.penalties import get_penalty
from transferkit.regularize import regularize

__all__ = [
    "AuditEntry",
    "AuditMismatch",
    "RegularizationAudit",
    "TransferkitError",
    "audit",
    "get_penalty",
    "regularize",
]
