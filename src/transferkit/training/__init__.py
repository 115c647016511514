"""The fine-tuning machinery: phases and the recipe, frozen features and their
cache, linear heads."""
