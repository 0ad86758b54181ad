"""Where a queued job stands in its lane: moved to :mod:`docpipe.positions`, which the notifier shares."""

from docpipe.positions import STEPS, ahead_of, coarse, queue_view

__all__ = ["STEPS", "ahead_of", "coarse", "queue_view"]
