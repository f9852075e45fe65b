"""SLADE's stages: self-supervised init, teacher, pseudo labels, student (and its objective). Stages never import each other."""
