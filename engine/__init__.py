"""The case machine: everything a case knows and every rule of how it moves, as pure code.

No Temporal, Kafka or clock here (``tests/unit/test_purity.py``): the workflow in
``workflows/case.py`` owns the handlers, feeds every message into ``engine.machine`` and carries
out the commands it returns. The modules, in reading order:

* ``state``    — the case state: the one object carried across continue-as-new;
* ``actions``  — what people do to a case (staff and borrower actions), one typed union;
* ``messages`` — what the workflow tells the machine: inbound events, results, the clock;
* ``commands`` — what the machine asks the workflow to do;
* ``rules``    — which action is allowed when, and why not (the stage rules, top to bottom);
* ``machine``  — how the case moves on each message;
* ``timers``   — its deadlines, and what happens when one passes;
* ``planner``  — what the workflow does next;
* ``moves``    — the steps every transition is made of (enter a stage, hold, close, publish);
* ``view``     — the case view and audit trail staff read.
"""
