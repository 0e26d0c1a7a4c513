"""What each Firework of a campaign does against the results store, as plain functions.

One module per Firework kind (``init``, ``label``, ``gate``, ``train``, ``explore``, ``select``):
fetch the inputs from the store, call the science step (:mod:`firegen.workflows.steps`), store the
outputs idempotently and hand back a typed record (:mod:`firegen.campaign.records`). The FireTasks
(:mod:`firegen.workflows.tasks`) are thin shells around them.
"""
