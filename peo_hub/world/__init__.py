"""The embedded offline world: a tiny base model, dual-labelled preference data, judges.

``base_model: embedded:toy`` in a recipe resolves here, so the whole PEO pipeline runs
and is measurable with no download: see :mod:`peo_hub.world.toy`.
"""
