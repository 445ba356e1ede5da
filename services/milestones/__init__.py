"""The milestones service: it keeps each partner's daily aggregates, detects
progress that is reliable, large enough to matter and lasting, and records each
milestone level once, ever, for the couple to see and celebrate."""
