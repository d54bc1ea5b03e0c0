"""`voicebox run`: core.py owns the parts and the one State; gpio.py its button, LED and switches;
home.py the Home Assistant link; retune.py carries out tuning changes; run.py is the command."""

from voicebox.daemon.core import Daemon
from voicebox.daemon.run import main_run

__all__ = ["Daemon", "main_run"]
