"""Backbones, embedding head, classifiers, discriminator and model builders (docs/method.md)."""
from bct.models.build import RetrievalModel, build_model, build_model_from_meta, model_meta

__all__ = ["RetrievalModel", "build_model", "build_model_from_meta", "model_meta"]
