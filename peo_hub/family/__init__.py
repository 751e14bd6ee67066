"""The family of policies θ₀ + Σ cᵢ Δᵢ: LoRA adapters read and combined, live/fused/per-row in PEOModel,
generation engines, and the family as files (``peo-hub merge``: adapter, model, mergekit YAML).
"""
