"""`voicebox setup`: the first run over SSH. Picks the mic (with a live level meter) and the
speaker (with a test tone), asks the agent id and the API key (no echo) and checks them as doctor
does, waits for a button press, blinks the LED, asks the mode; then edits the config in place
(comments kept), validates it, stores the key as the systemd credential and offers to (re)start
the service. `--non-interactive` takes every answer from flags.

Nothing is written before the end, and then atomically: Ctrl-C at any point leaves the existing
config and credential untouched.
"""

from __future__ import annotations

import argparse
import getpass
import math
import os
import select
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from voicebox import config, config_edit, credentials
from voicebox.audio import devices
from voicebox.audio.devices import AudioDeviceError
from voicebox.config import API_KEY_ENV, EX_CONFIG, Config, ConfigError, Secret
from voicebox.doctor import host as h
from voicebox.doctor.audio import dbfs, open_stream, tone
from voicebox.doctor.report import Check
from voicebox.doctor.service import check_service

METER_PERIOD_S = 0.1
METER_MAX_S = 120.0
METER_WIDTH = 30
METER_RANGE_DB = 60.0
FALLBACK_RATES = (48000, 44100, 32000, 16000)
MODES = ("push_to_talk", "wake_word", "always_on")
REPO_SAMPLE = Path(__file__).resolve().parent.parent / "config" / "voicebox.yaml"


class Abort(Exception):
    """The user gave up (EOF on the terminal, or an answer that cannot be used)."""


@dataclass
class Answers:
    """What setup will write: dotted config keys, and the key to store (None keeps the old one)."""

    changes: dict[str, Any] = field(default_factory=dict)
    key: Secret | None = None


class Terminal:
    """Questions and answers on the terminal; a line that updates in place for the meter."""

    def __init__(self, inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> None:
        self.inp = inp
        self.out = out

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, question: str, default: str | None = None) -> str:
        shown = f" [{default}]" if default not in (None, "") else ""
        self.out.write(f"{question}{shown}: ")
        self.out.flush()
        line = self.inp.readline()
        if not line:
            raise Abort("no answer (end of input)")
        answer = line.strip()
        return answer if answer else (default or "")

    def secret(self, question: str) -> str:
        if self.inp.isatty():
            return getpass.getpass(f"{question}: ", stream=self.out)
        return self.ask(question)

    def yes(self, question: str, default: bool = True) -> bool:
        while True:
            answer = self.ask(question + (" [Y/n]" if default else " [y/N]")).lower()
            if not answer:
                return default
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            self.say("  please answer y or n")

    def line(self, text: str) -> None:
        self.out.write("\r" + text + "\x1b[K")
        self.out.flush()

    def enter_pressed(self) -> bool:
        """True (and the line consumed) if Enter was typed; never blocks."""
        ready, _, _ = select.select([self.inp], [], [], 0)
        if ready:
            self.inp.readline()
            return True
        return False


# --- devices ---------------------------------------------------------------------------------


def _list(term: Terminal, kind: devices.Kind) -> list[tuple[int, str]]:
    found = devices.candidates(kind)
    default = devices.default_index(kind)
    term.say(f"{'Microphones' if kind == 'input' else 'Speakers'}:")
    for index, name in found:
        mark = "*" if index == default else " "
        term.say(f"  {mark} [{index}] {name}  ({devices.default_rate(index)} Hz)")
    return found


def _choose(term: Terminal, kind: devices.Kind, current: str | int | None) -> tuple[int, str]:
    found = _list(term, kind)
    if not found:
        raise Abort(f"no {kind} devices: {devices.NO_DEVICES_HINT}")
    try:
        default = str(devices.find_device(current, kind))
    except AudioDeviceError:
        default = str(found[0][0])
    while True:
        answer = term.ask(
            f"{'Microphone' if kind == 'input' else 'Speaker'} (number or name)", default
        )
        try:
            index = devices.find_device(answer, kind)
        except AudioDeviceError as exc:
            term.say(f"  {exc}")
            continue
        return index, devices.device_name(index)


def _rate(kind: devices.Kind, index: int, configured: int | None) -> tuple[Any, int, str]:
    """An open stream at the configured rate, else the device default, else a common rate."""
    tried: list[str] = []
    default = devices.default_rate(index)
    for rate, why in [
        *([(configured, "configured")] if configured else []),
        (default, "device default"),
        *((r, "fallback") for r in FALLBACK_RATES),
    ]:
        try:
            return open_stream(kind, index, rate), rate, why
        except AudioDeviceError as exc:
            tried.append(str(exc))
    raise AudioDeviceError("; ".join(tried))


def meter_text(block: np.ndarray[Any, Any]) -> str:
    x = block.astype(np.float64)
    level = dbfs(math.sqrt(float(np.mean(x * x)))) if len(x) else -120.0
    peak = dbfs(float(np.max(np.abs(x)))) if len(x) else -120.0
    filled = int(round(METER_WIDTH * max(0.0, min(1.0, 1 + level / METER_RANGE_DB))))
    bar = "#" * filled + "." * (METER_WIDTH - filled)
    return f"  level {level:6.1f} dBFS  peak {peak:6.1f} dBFS  |{bar}|"


def live_meter(term: Terminal, stream: Any, rate: int) -> None:
    """Show the mic level in place, ten times a second, until Enter."""
    frames = int(rate * METER_PERIOD_S)
    started = time.monotonic()
    next_at = started
    while time.monotonic() - started < METER_MAX_S:
        data, _overflow = stream.read(frames)
        term.line(meter_text(np.asarray(data[:, 0])))
        next_at += METER_PERIOD_S
        time.sleep(max(0.0, next_at - time.monotonic()))
        if term.enter_pressed():
            break
    term.say()


def pick_input(term: Terminal, cfg: Config, answers: Answers) -> None:
    index, name = _choose(term, "input", cfg.audio.input.device)
    try:
        stream, rate, why = _rate("input", index, cfg.audio.input.sample_rate)
    except AudioDeviceError as exc:
        raise Abort(f"{name!r}: {exc}") from None
    term.say(f"Listening on {name!r} at {rate} Hz ({why}). Speak: the bar moves. Enter when done.")
    try:
        live_meter(term, stream, rate)
    finally:
        stream.close(ignore_errors=True)
    answers.changes["audio.input.backend"] = "sounddevice"
    answers.changes["audio.input.device"] = name
    if why != "device default":
        answers.changes["audio.input.sample_rate"] = rate


def pick_output(term: Terminal, cfg: Config, answers: Answers) -> None:
    while True:
        index, name = _choose(term, "output", cfg.audio.output.device)
        try:
            stream, rate, why = _rate("output", index, cfg.audio.output.sample_rate)
        except AudioDeviceError as exc:
            term.say(f"  {name!r}: {exc}")
            continue
        term.say(f"Playing a test tone on {name!r} at {rate} Hz ({why})...")
        try:
            pcm = tone(rate, 1.0)
            stream.write(np.repeat(pcm[:, None], stream.channels, axis=1))
            stream.stop()
        finally:
            stream.close(ignore_errors=True)
        if term.yes("Did you hear the tone?"):
            break
    answers.changes["audio.output.backend"] = "sounddevice"
    answers.changes["audio.output.device"] = name
    if why != "device default":
        answers.changes["audio.output.sample_rate"] = rate


# --- agent and key ---------------------------------------------------------------------------


def verify(cfg: Config, key: Secret | None, source: str) -> list[Check]:
    """The service checks doctor runs, for the answers given so far."""
    return check_service(cfg, key, source)


def _preview(cfg: Config, answers: Answers) -> Config:
    agent = {k: v for k, v in answers.changes.items() if k.startswith("agent.")}
    preview: Config = config.with_changes(cfg, **agent)
    return preview


def ask_agent(term: Terminal, cfg: Config, answers: Answers, stored: Secret | None) -> None:
    agent_id = cfg.agent.agent_id
    key = stored
    while True:
        agent_id = term.ask("Agent id (from the agent's page)", agent_id or None)
        typed = term.secret(
            "API key (not shown" + ("; Enter keeps the stored key)" if stored else ")")
        )
        if typed.strip():
            key = Secret(credentials.clean(typed))
        answers.changes["agent.agent_id"] = agent_id
        answers.key = key if key is not stored else None
        term.say(f"Checking with {cfg.agent.api_base} ...")
        results = verify(_preview(cfg, answers), key, "what you typed")
        if any(c.name == "private agent" and c.status == "fail" for c in results):
            answers.changes["agent.requires_auth"] = True  # the agent is private: sign URLs
            results = verify(_preview(cfg, answers), key, "what you typed")
        for c in results:
            term.say("  " + c.line())
        failed = {c.name for c in results if c.status == "fail"}
        if not failed & {"api key", "agent", "signed url", "service"}:
            return
        if "service" in failed and term.yes(
            "The service cannot be reached. Keep these answers?", False
        ):
            return
        term.say("Let's try again.")


# --- GPIO ------------------------------------------------------------------------------------


def _pin(text: str) -> int | None:
    if text.strip().lower() in ("", "none", "null", "-"):
        return None
    value = int(text)
    if not 0 <= value <= 53:
        raise ValueError("a BCM pin is 0..53")
    return value


def ask_pin(term: Terminal, question: str, default: int | None) -> int | None:
    while True:
        answer = term.ask(question, "none" if default is None else str(default))
        try:
            return _pin(answer)
        except ValueError:
            term.say("  a BCM pin number 0..53, or none")


def ask_gpio(term: Terminal, cfg: Config, answers: Answers, pin_factory: Any = None) -> None:
    pin = ask_pin(term, "Button BCM pin (none for no button)", cfg.gpio.button.pin)
    answers.changes["gpio.button.pin"] = pin
    if pin is not None:
        try:
            button = h.open_button(pin, cfg.gpio.button.active_low, pin_factory)
        except ImportError:
            term.say("  no GPIO on this machine: the button is not checked")
        except Exception as exc:
            term.say(f"  pin {pin}: {exc} (stop voicebox if it holds the pin)")
        else:
            try:
                term.say(f"  Press the button now ({h.BUTTON_WAIT_S:g} s)...")
                seen = h.wait_for_press(button, h.BUTTON_WAIT_S)
                term.say("  press seen" if seen else "  no press seen: check the wiring to ground")
            finally:
                button.close()
    led = ask_pin(term, "LED BCM pin (none for no LED)", cfg.gpio.led.pin)
    answers.changes["gpio.led.pin"] = led
    if led is not None:
        blink(term, led, cfg.gpio.led.active_high, pin_factory)
    ask_mute(term, cfg, answers, button=pin, led=led)


def ask_mute(
    term: Terminal, cfg: Config, answers: Answers, button: int | None, led: int | None
) -> None:
    """The privacy mute: a pin of its own (a switch or a button), else the talk button's hold."""
    taken = {p for p in (button, led) if p is not None}
    while True:
        pin = ask_pin(term, "Mute switch or button BCM pin (none for none)", cfg.gpio.mute.pin)
        if pin is None or pin not in taken:
            break
        term.say(f"  pin {pin} is the talk button's or the LED's: another pin, or none")
    answers.changes["gpio.mute.pin"] = pin
    if pin is not None:
        while True:
            kind = term.ask(
                "Mute pin: switch (muted while closed) or button (a press mutes/unmutes)",
                cfg.gpio.mute.kind,
            )
            if kind in ("switch", "button"):
                answers.changes["gpio.mute.kind"] = kind
                return
            term.say("  switch or button")
    if button is None:
        return
    while True:
        hold = term.ask(
            "A hold of the talk button: end (the conversation) or mute", cfg.gpio.button.long_press
        )
        if hold in ("end", "mute"):
            answers.changes["gpio.button.long_press"] = hold
            return
        term.say("  end or mute")


def blink(term: Terminal, pin: int, active_high: bool, pin_factory: Any = None) -> None:
    try:
        from gpiozero import LED

        led = LED(pin, active_high=active_high, pin_factory=pin_factory)
    except ImportError:
        term.say("  no GPIO on this machine: the LED is not blinked")
        return
    except Exception as exc:
        term.say(f"  LED pin {pin}: {exc}")
        return
    try:
        term.say("  blinking the LED three times")
        led.blink(on_time=0.25, off_time=0.25, n=3, background=False)
    finally:
        led.close()


def ask_mode(term: Terminal, cfg: Config, answers: Answers) -> None:
    choices = ", ".join(MODES[:-1]) + " or " + MODES[-1]
    while True:
        mode = term.ask(f"Mode: {choices}", cfg.conversation.mode)
        if mode in MODES:
            answers.changes["conversation.mode"] = mode
            break
        term.say(f"  {choices}")
    if mode != "wake_word":
        return
    words = ", ".join(config.WAKE_MODELS)
    while True:
        word = term.ask(f"Wake word: {words}, or a model's .json path", cfg.wake.model)
        problem = config.wake_model_problem(word)
        if problem is None:
            answers.changes["wake.model"] = word
            return
        term.say(f"  {problem}")


# --- writing ---------------------------------------------------------------------------------


def source_text(path: Path) -> tuple[str, str]:
    """The text to edit: the existing config, else the sample installed next to it."""
    for candidate in (path, path.with_name("config.yaml.example"), REPO_SAMPLE):
        try:
            return config.read_utf8(candidate), str(candidate)
        except FileNotFoundError:
            continue
    raise Abort(f"neither {path} nor a sample config exists: run sudo scripts/install.sh first")


def render(path: Path, answers: Answers) -> str:
    """The new config text, validated; ConfigError names what is wrong."""
    text, _ = source_text(path)
    try:
        new = config_edit.edit(text, answers.changes)
    except config_edit.EditError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    config.parse(new, str(path))
    return new


def _service_group(host: h.Host) -> int | None:
    for row in h._table(host.file("/etc/group")):
        if len(row) >= 3 and row[0] == host.user:
            return int(row[2])
    return None


def write(term: Terminal, path: Path, host: h.Host, answers: Answers) -> bool:
    """Store the key and the config; True when the stored key changed."""
    text = render(path, answers)
    changed = False
    if answers.key is not None:
        try:
            old = _stored_key(host)
        except config.NotUtf8Error:
            old = None
        changed = old is None or old.reveal() != answers.key.reveal()
        credentials.store(host.credential, answers.key.reveal())
        term.say(f"Stored the API key in /{host.credential.relative_to(host.root)} (0600, root).")
    config_edit.write_atomic(path, text, 0o640, _service_group(host))
    term.say(f"Wrote {path} (valid; comments kept).")
    return changed


def needs_restart(cfg: Config, answers: Answers, key_changed: bool) -> bool:
    """A reload re-reads the config file only: a new key (under LoadCredential= copied in at
    start) and new audio devices (opened at start) need a restart."""
    if key_changed:
        return True
    for dotted, value in answers.changes.items():
        if dotted.startswith(("audio.input.", "audio.output.")):
            node: Any = cfg
            for part in dotted.split("."):
                node = getattr(node, part)
            if node != value:
                return True
    return False


def offer_service(term: Terminal, host: h.Host, ask: bool, restart: bool = False) -> None:
    """Start the service, or (running) restart it when `restart` is true, else reload it."""
    if not host.systemd_running():
        term.say("systemd is not running here: start voicebox after booting with it.")
        return
    state = host.run("systemctl", "is-active", host.unit)
    active = state is not None and state.stdout.strip() == "active"
    verb = ("restart" if restart else "reload") if active else "start"
    if ask and not term.yes(
        f"voicebox is {'running' if active else 'not running'}: {verb} it now?"
    ):
        term.say(f"Later: sudo systemctl {verb} voicebox")
        return
    done = host.run("systemctl", verb, host.unit)
    if done is None or done.returncode != 0:
        term.say(f"systemctl {verb} failed: see journalctl -u voicebox -b")
    else:
        term.say(f"voicebox {verb}ed. Check it with: voicebox doctor")


# --- the command -----------------------------------------------------------------------------


def _load(path: Path, api_base: str | None) -> Config:
    text, name = source_text(path)
    try:
        cfg = config.parse(text, name)
    except ConfigError:
        cfg = Config()  # a broken config is being replaced: start from the defaults
    if api_base:
        cfg = config.with_changes(cfg, **{"agent.api_base": api_base})
    return cfg


def _stored_key(host: h.Host) -> Secret | None:
    """The key stored now; NotUtf8Error when that file cannot be read as a key."""
    try:
        value = config.read_secret(host.credential)
    except OSError:
        return None
    return Secret(value) if value else None


def interactive(args: argparse.Namespace, term: Terminal, host: h.Host) -> int:
    path = Path(args.config)
    cfg = _load(path, args.api_base)
    answers = Answers()
    if args.api_base:
        answers.changes["agent.api_base"] = args.api_base
    term.say(f"voicebox setup: writes {path} at the end; Ctrl-C leaves it as it is.")
    term.say()
    pick_input(term, cfg, answers)
    pick_output(term, cfg, answers)
    try:
        stored = _stored_key(host)
    except config.NotUtf8Error as exc:
        term.say(f"{exc}; the key you give replaces it.")
        stored = None
    ask_agent(term, cfg, answers, stored)
    ask_gpio(term, cfg, answers)
    ask_mode(term, cfg, answers)
    key_changed = write(term, path, host, answers)
    offer_service(term, host, ask=True, restart=needs_restart(cfg, answers, key_changed))
    return 0


def non_interactive(args: argparse.Namespace, term: Terminal, host: h.Host) -> int:
    path = Path(args.config)
    cfg = _load(path, args.api_base)
    answers = Answers()
    if args.api_base:
        answers.changes["agent.api_base"] = args.api_base
    if args.agent_id is not None:
        answers.changes["agent.agent_id"] = args.agent_id
    for kind, spec in (("input", args.input_device), ("output", args.output_device)):
        if spec is None:
            continue
        try:
            index = devices.find_device(spec, kind)  # type: ignore[arg-type]
        except AudioDeviceError as exc:
            term.say(f"voicebox setup: {exc}")
            return 1
        answers.changes[f"audio.{kind}.backend"] = "sounddevice"
        answers.changes[f"audio.{kind}.device"] = devices.device_name(index)
    pins = (("button", args.button_pin), ("led", args.led_pin), ("mute", args.mute_pin))
    for name, value in pins:
        if value is not None:
            try:
                answers.changes[f"gpio.{name}.pin"] = _pin(value)
            except ValueError:
                term.say(f"voicebox setup: --{name}-pin: a BCM pin 0..53 or none, got {value!r}")
                return 2
    if args.mute_kind:
        answers.changes["gpio.mute.kind"] = args.mute_kind
    if args.long_press:
        answers.changes["gpio.button.long_press"] = args.long_press
    if args.mode:
        answers.changes["conversation.mode"] = args.mode
    if args.wake_model:
        problem = config.wake_model_problem(args.wake_model)
        if problem is not None:
            term.say(f"voicebox setup: --wake-model: {problem}")
            return 2
        answers.changes["wake.model"] = args.wake_model
    if args.api_key_file:
        try:
            raw = (
                config.decode_utf8(sys.stdin.buffer.read(), "the key on standard input")
                if args.api_key_file == "-"
                else config.read_utf8(Path(args.api_key_file))
            )
        except OSError as exc:
            term.say(f"voicebox setup: cannot read {args.api_key_file}: {exc.strerror or exc}")
            return 1
        if not credentials.clean(raw):
            term.say(f"voicebox setup: {args.api_key_file}: no API key in it")
            return 1
        name = "the key on standard input" if args.api_key_file == "-" else args.api_key_file
        answers.key = Secret(config.secret_value(credentials.clean(raw), name))
    elif os.environ.get(API_KEY_ENV, "").strip():
        answers.key = Secret(credentials.clean(os.environ[API_KEY_ENV]))
    if not args.no_check:
        key = answers.key or _stored_key(host)
        results = verify(_preview(cfg, answers), key, "the key given")
        for c in results:
            term.say(c.line())
        if any(c.status == "fail" for c in results):
            term.say(f"voicebox setup: not written ({path} unchanged); --no-check skips this")
            return 1
    key_changed = write(term, path, host, answers)
    offer_service(term, host, ask=False, restart=needs_restart(cfg, answers, key_changed))
    return 0


def main_setup(args: argparse.Namespace) -> int:
    """`voicebox setup [--non-interactive ...]`."""
    from voicebox import logs

    logs.setup("error")
    term = Terminal()
    host = h.Host(root=Path(args.root))
    try:
        if args.non_interactive:
            return non_interactive(args, term, host)
        return interactive(args, term, host)
    except KeyboardInterrupt:
        term.say(f"\nsetup interrupted: {args.config} and the stored key are as they were.")
        return 130
    except Abort as exc:
        term.say(f"\nvoicebox setup: {exc}; nothing written.")
        return 1
    except config.NotUtf8Error as exc:
        term.say(f"\nvoicebox setup: {exc}; nothing written.")
        return EX_CONFIG
    except ConfigError as exc:
        term.say(f"\nvoicebox setup: the result would not be valid, nothing written:\n{exc}")
        return EX_CONFIG
    except AudioDeviceError as exc:
        term.say(f"\nvoicebox setup: {exc}; nothing written.")
        return 1
    except OSError as exc:
        term.say(f"\nvoicebox setup: {exc.strerror or exc}: {getattr(exc, 'filename', '')}")
        return 1
