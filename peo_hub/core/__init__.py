"""The method's math, with no torch: the PEO formulation (policy), Pareto fronts and hypervolume, prompt-level
statistics, the degeneration guard's measures.
"""
