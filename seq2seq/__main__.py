import sys

from seq2seq.cli.main import main

sys.exit(main())
