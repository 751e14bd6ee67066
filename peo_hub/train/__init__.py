"""Phase 1: one DPO LoRA adapter per aspect through TRL (pairs read or sampled from the base itself), or
``compose``: a bundle from adapters that already exist.
"""
