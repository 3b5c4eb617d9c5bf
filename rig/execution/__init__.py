"""The execution stage: a run's scenarios in their guests.

runner (the matrix: grouping by topology, workers, the vCPU budget, keeping
a failing guest), scenario_run (one scenario and its after-checks), control
(what a run's guests share: halting, stopping them all), runlog (run.log).
Guests come up through rig.guest.bringup; outcomes are rig.results.run data.
"""
