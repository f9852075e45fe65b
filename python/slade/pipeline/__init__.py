"""The SLADE pipeline over the stages: self-training rounds and folds, the report, the ablation study."""
