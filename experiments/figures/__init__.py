"""Figures from tracked runs: one module per figure family (its data and its drawing), one
registry (``registry.FIGURES``) that the CLI, the tests, docs/figures.md and the gallery read.

    common       the selected runs (``Data``), configs, bands over seeds, shared helpers
    style        the one plotting style (palette, sizes, ``render``)
    activations  gradients  losses  layers  depth  batch  histograms  boundaries  theory
    moments      the figure families: data functions, drawing, when the runs can show it
    registry     every figure, in drawing order: name, draw, can_show, what
    runs         reading runs back from MLflow (``select``, ``read_histories``, …)
    cli          ``python -m experiments.plots``: draw in worker processes, manifest, logging
    gallery      ``make gallery``: the README's images, from real sweeps

Imports go one way: families → common, style; registry → families; cli → registry, runs.
Nothing imports ``cli``.
"""
