"""The on-disk contract: the bundle's manifest, front.json, the model card, the plot, and pulling a bundle from the Hub.
"""
