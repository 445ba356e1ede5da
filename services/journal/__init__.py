"""The journal service: accounts, couples and the app's entries; it publishes
what happened through its outbox."""
