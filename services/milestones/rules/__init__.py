"""The project's own milestone rules, each a pure function of a partner's daily aggregates.

Each rule is calibrated on the simulator's null cohorts (``simulation``) for
a false rate over every daily look of a history, and its thresholds are read
from the committed file that ``make calibrate`` writes.
"""
