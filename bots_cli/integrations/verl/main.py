"""`python -m bots_cli.integrations.verl.main <verl overrides>`: verl's PPO entry point, with
BOTS choosing every batch (`BotsTaskRunner`, trainer.py).

It composes verl's own `ppo_trainer` config with the overrides, exactly as
`python -m verl.trainer.main_ppo` does, checks the settings BOTS needs (one line each, exit 2)
and runs verl's `run_ppo` with `BotsTaskRunner`. A user error raised inside the Ray actor (bad
data, a checkpoint without BOTS' state) is one line and exit 2 as well.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from bots_cli.errors import UserError
from bots_cli.integrations.verl.version import check_verl_version


def _refuse(err: BaseException) -> NoReturn:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2) from None


def main() -> None:
    try:
        check_verl_version()
    except UserError as err:
        _refuse(err)
    import hydra
    import ray
    from verl.trainer import main_ppo

    from bots_cli.integrations.verl.trainer import check_config, task_runner_class

    @hydra.main(config_path=str(Path(main_ppo.__file__).parent / "config"),
                config_name="ppo_trainer", version_base=None)
    def _run(config: Any) -> None:
        try:
            check_config(config)
        except UserError as err:
            _refuse(err)
        main_ppo.auto_set_device(config)
        try:
            main_ppo.run_ppo(config, task_runner_class=task_runner_class())
        except ray.exceptions.RayTaskError as err:
            if isinstance(err.cause, UserError):
                _refuse(err.cause)
            raise

    _run()


if __name__ == "__main__":
    main()
