"""Search over whole training runs: population-based training and evolution strategies."""
