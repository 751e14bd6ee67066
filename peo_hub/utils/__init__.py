"""Plumbing every stage uses: errors, ids, atomic writes and output ledgers, weight-file checks, Hub I/O.
"""
