"""Compare teacher-forcing ratios and scheduled-sampling schedules on one task.

Trains one model per setting (and per seed) with the same data, seed and step budget,
decodes the test split greedily, scores it with sacreBLEU, and measures exposure bias on the
validation split. Bengio, Vinyals, Jaitly and Shazeer (2015), "Scheduled Sampling for Sequence
Prediction with Recurrent Neural Networks"; the schedules are in :mod:`seq2seq.training.teacher_forcing`.

    seq2seq compare-tf --settings constant:1.0 constant:0.5 linear --seeds 3 --out runs/ctf
    python scripts/compare_teacher_forcing.py ...          # the same, from a source checkout

The parts: :mod:`.options` (the command line), :mod:`.settings` (the ``--settings``
mini-language and what each schedule does over the run), :mod:`.runs` (the data, and one run:
train, decode, score, diagnose), :mod:`.stats` (the statistics), :mod:`.pooled` (each arm against the first, pooled over
seeds and sentences, per scored set), :mod:`.report` and :mod:`.forest` (tables, CSV, plots)
and :mod:`.study` (the comparison: every setting and seed, resumable).
"""
