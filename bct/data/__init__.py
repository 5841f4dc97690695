"""Data: image-list readers, image decoding, transforms, datasets (GLDv2 training lists, revisited
Oxford/Paris, GLDv2 retrieval), the GLDv2 preparation (Dataset.md) and the synthetic landmarks."""
