"""firegen command line and campaign logic."""
