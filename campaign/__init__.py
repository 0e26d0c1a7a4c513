"""The campaign's domain: what a campaign is, independent of where it runs.

Config models (systems, stages, the loop's settings), MD conditions and protocols, convergence
decisions and the records steps hand back, structure preparation and building, labeled data in and
out. Everything else builds on this package (steps and ``db`` → ``workflows`` → ``orchestrator``);
it imports none of them.
"""
