"""Reading a trained model: predictions, evaluation, diagnosis of a history, the report."""
