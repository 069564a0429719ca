"""Reading finished runs: statistics with confidence intervals, comparisons and plots."""
