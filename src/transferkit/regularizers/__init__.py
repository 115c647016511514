"""Weight penalties and constraints on built models, and the audit that proves them."""
