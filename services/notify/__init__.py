"""The notify service: turns milestones into celebrations, in the inbox and on every channel a partner chose."""

SOURCE = "/notify"  # the CloudEvents source of every event this service publishes
