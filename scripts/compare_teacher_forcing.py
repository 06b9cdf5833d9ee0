#!/usr/bin/env python
"""Compare teacher-forcing ratios and schedules: ``seq2seq compare-tf`` (see ``--help``)."""
import sys

from seq2seq.compare.study import main

if __name__ == "__main__":
    sys.exit(main())
