"""The simulator: synthetic partners and couples with known truth, and the studies run on them."""
