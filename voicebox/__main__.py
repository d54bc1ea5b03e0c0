"""`python -m voicebox`: the same as the `voicebox` command."""

from voicebox.cli import main

raise SystemExit(main())
