"""Model definitions the built-in suites build (thin wrappers around torch.nn blocks).

A model here is task head + backbone + task head, with the backbone in a ``.backbone`` attribute so a
suite can size (and report) the backbone alone.
"""
