"""Named training recipes and configuration files, resolved into one typed :class:`ExperimentConfig`.

Precedence, lowest first: the dataclass defaults, the named recipe (``engan/recipes.toml``),
a configuration file (``--config``: TOML, YAML or a run's ``config.json``), then single
settings (``--set section.field=value``, ``--loss term=weight``). Every layer has the shape
of ``config.json``; an unknown section, field, loss term or option is an error that names it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engan.config import ExperimentConfig, LossConfig, ModelConfig, generator_config

RECIPES_FILE = Path(__file__).with_name("recipes.toml")
SECTIONS = ("model", "discriminator", "loss", "data", "train")


class ConfigError(ValueError):
    """A recipe, configuration file or setting cannot be used; the message says which and why."""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def recipes() -> dict[str, dict[str, Any]]:
    """The named recipes (``engan/recipes.toml``), by name."""
    return _read_toml(RECIPES_FILE)


def recipe_help() -> list[tuple[str, str]]:
    """``(name, description)`` rows for ``--help``."""
    return [(name, r.get("description", "")) for name, r in recipes().items()]


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A configuration file as a mapping: ``.toml``, ``.yaml``/``.yml`` (needs PyYAML) or ``.json``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}; pass a .toml, .yaml or .json file (a run's config.json works)")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            data = _read_toml(p)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ModuleNotFoundError:
                raise ConfigError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or write the file as TOML or JSON") from None
            data = yaml.safe_load(p.read_text()) or {}
        elif suffix == ".json":
            data = json.loads(p.read_text())
        else:
            raise ConfigError(f"{p}: unknown config format '{suffix}'; use .toml, .yaml/.yml or .json")
    except ConfigError:
        raise
    except Exception as e:  # TOMLDecodeError, YAMLError, JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{p} could not be parsed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of sections ({', '.join(SECTIONS)}), not a {type(data).__name__}")
    return data


def _coerce(where: str, value: Any, current: Any) -> Any:
    """``value`` (from a file, or text from the command line) as the type of the field's current value."""
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ConfigError(f"{where}: {value!r} is not true/false")
            return text.lower() in ("true", "1", "yes", "on")
        if isinstance(current, tuple):
            value = [x.strip() for x in text.split(",")]
        else:
            try:
                return type(current)(float(text)) if isinstance(current, int) else type(current)(text)
            except ValueError:
                raise ConfigError(f"{where}: {value!r} is not a valid {type(current).__name__}") from None
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(current):
            raise ConfigError(f"{where}: give {len(current)} values, got {value!r}")
        return tuple(_coerce(f"{where}[{i}]", v, c) for i, (v, c) in enumerate(zip(value, current)))
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not true/false")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {value!r} is not a number")
        if isinstance(current, int) and float(value) != int(value):
            raise ConfigError(f"{where}: {value!r} is not a whole number")
        return type(current)(value)
    return value


def _update(obj: Any, changes: Mapping[str, Any], where: str) -> Any:
    """``obj`` (a frozen dataclass) with ``changes`` applied, nested dataclasses included."""
    if not isinstance(changes, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {changes!r}")
    fields = {f.name: f for f in dataclasses.fields(obj)}
    kwargs = {}
    for key, value in changes.items():
        if key not in fields:
            raise ConfigError(f"unknown setting {where}.{key}; {where} has: {', '.join(fields)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            kwargs[key] = _update(current, value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(f"{where}.{key}", value, current)
    try:
        return dataclasses.replace(obj, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _update_model(model: ModelConfig, changes: Mapping[str, Any], where: str) -> ModelConfig:
    changes = dict(changes)
    if "preset" in changes:  # a preset resets the generator to its own, then "generator" refines it
        try:
            model = ModelConfig(preset=changes["preset"], generator=generator_config(changes.pop("preset")))
        except ValueError as e:
            raise ConfigError(f"{where}.preset: {e}") from None
    return _update(model, changes, where)


def _update_loss(loss: LossConfig, changes: Mapping[str, Any], where: str) -> LossConfig:
    if not isinstance(changes, Mapping):
        raise ConfigError(f"{where} must be a mapping of loss terms, got {changes!r}")
    changes = changes.get("terms", changes)
    terms = {k: dict(v) for k, v in loss.terms.items()}
    for name, entry in changes.items():
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            entry = {"weight": entry}  # loss = { color = 10 } is short for { color = { weight = 10 } }
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}.{name} must be a weight or a mapping of weight and options, got {entry!r}")
        terms.setdefault(name, {}).update(entry)
    return LossConfig(terms=terms)


def apply(cfg: ExperimentConfig, layer: Mapping[str, Any], source: str) -> ExperimentConfig:
    """``cfg`` with one layer (recipe, file or settings, shaped as ``config.json``) applied."""
    unknown = set(layer) - set(SECTIONS) - {"description"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(unknown))}; sections: {', '.join(SECTIONS)}")
    out = cfg
    for section in SECTIONS:
        if section not in layer:
            continue
        where = f"{source}: {section}" if source else section
        if section == "model":
            out = dataclasses.replace(out, model=_update_model(out.model, layer[section], where))
        elif section == "loss":
            out = dataclasses.replace(out, loss=_update_loss(out.loss, layer[section], where))
        else:
            out = dataclasses.replace(out, **{section: _update(getattr(out, section), layer[section], where)})
    return out


def settings_layer(items: list[str], losses: list[str] = ()) -> dict[str, Any]:
    """``["train.lr=1e-4", "loss.order.slope=0.3"]`` and ``["color=10"]`` as one nested layer (values as text)."""
    layer: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: write SECTION.FIELD=VALUE, e.g. train.lr=1e-4 or loss.order.slope=0.3")
        node = layer
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r} conflicts with another --set of {p}")
        node[parts[-1]] = value
    for item in losses:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--loss {item!r}: write NAME=WEIGHT, e.g. color=10 (0 switches a term off)")
        layer.setdefault("loss", {}).setdefault(name.strip(), {})["weight"] = value.strip()
    return layer


def resolve(recipe: str | None = None, config_file: str | os.PathLike | None = None,
            settings: Mapping[str, Any] | None = None, base: ExperimentConfig | None = None) -> ExperimentConfig:
    """Defaults (or ``base``), then the recipe, the file and the settings.

    Raises:
        ConfigError: an unknown recipe, section, field or value (the message names it and lists what exists).
    """
    cfg = base or ExperimentConfig()
    if recipe is not None:
        table = recipes()
        if recipe not in table:
            raise ConfigError(f"unknown recipe {recipe!r}; recipes: {', '.join(table)} (or --config FILE)")
        cfg = apply(cfg, table[recipe], f"recipe {recipe}")
    if config_file is not None:
        cfg = apply(cfg, read_config_file(config_file), str(config_file))
    if settings:
        cfg = apply(cfg, settings, "")
    return cfg
