"""Where nanbench's Hydra configs are, and composing them exactly as the command line does.

One home for Hydra's compose API: the tests, the studies (claims, boundary) and the tools use
these instead of their own ``initialize_config_dir`` blocks, so that a config composed in code is
the config `python -m nanbench` (or its ``-m`` jobs) would see.
"""

from __future__ import annotations

import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent   # the project's checkout (configs live beside the package)
CONF_DIR = ROOT / "conf"                        # conf/config.yaml and its option groups
SWEEPS_DIR = ROOT / "sweeps"                    # sweep files, used with --config-dir sweeps


def compose(overrides: list[str] | tuple[str, ...] = (), *, config_name: str = "config",
            config_dir: Path | str = CONF_DIR, hydra_config: bool = False):
    """`config_name` from `config_dir` composed with `overrides`. A folder other than conf/ gets
    conf/ on its search path, as ``--config-dir sweeps`` does; ``hydra_config=True`` keeps the
    ``hydra`` node (its sweeper params, callbacks)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    config_dir = Path(config_dir).resolve()
    search = [] if config_dir == CONF_DIR else [f"hydra.searchpath=[file://{CONF_DIR}]"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=[*search, *overrides],
                                 return_hydra_config=hydra_config)
    finally:
        GlobalHydra.instance().clear()


def sweep_jobs(sweep_file: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The Hydra jobs of a sweep file: one override tuple per combination of its
    ``hydra.sweeper.params``, in the basic sweeper's order (first key outermost). `overrides`
    apply first, so ``hydra.sweeper.params.dataset=doc000_clean`` narrows the grid."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_file)
    cfg = compose(overrides, config_name=path.stem, config_dir=path.parent, hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
            else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
            for o in OverridesParser.create().parse_overrides(params)]
    return list(itertools.product(*axes))
