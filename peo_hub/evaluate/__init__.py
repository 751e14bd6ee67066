"""Phases 2-3: the sweep over the family and the baselines, judged and guarded, its records, the alpha search,
and the front chosen on selection prompts and confirmed on the others.
"""
