"""Tier-2 cross-framework parity: both twins trained with the same recipe, compared step by step.

    engine.py    the lockstep engine: both twins on the same batches and schedule, the float64 probes
                 that find where the runs part, run_parity (one result dict per model). It steps the twins
                 in its own loop, which is what lets it bisect: kept for finding where two runs part
    trainers.py  the real trainers (torch and Keras Session, schedules, callbacks) from the same weights on
                 the same batches, compared per step in float64 and on final metrics over seeds
    verdict.py   the tolerances and the checks of a result: early float64 window, loss-curve band,
                 learning rate, final metrics over seeds, probes; tier-1 and metric summaries
    report.py    parity.json / parity.md / loss plots, the model card's section and the top README's table

tools/crosscheck.py --train runs it for one model; tools/parity_all.py for every model.
"""
