"""Phases 2-3: the sweep over the family and the baselines (system prompt, MOD, steering), judged and
guarded, its records, the refusal plane, and the front chosen on selection prompts and confirmed on the
others (over training seeds too).
"""
