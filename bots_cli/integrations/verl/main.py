"""`python -m bots_cli.integrations.verl.main <verl overrides>`: verl's PPO entry point, with
BOTS choosing every batch (`BotsTaskRunner`, trainer.py).

It composes verl's own `ppo_trainer` config with the overrides, exactly as
`python -m verl.trainer.main_ppo` does, checks the settings BOTS needs (one line each, exit 2)
and runs verl's `run_ppo` with `BotsTaskRunner`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bots_cli.errors import UserError
from bots_cli.integrations.verl.trainer import check_config, task_runner_class
from bots_cli.integrations.verl.version import check_verl_version


def main() -> None:
    try:
        check_verl_version()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    import hydra
    from verl.trainer import main_ppo

    @hydra.main(config_path=str(Path(main_ppo.__file__).parent / "config"),
                config_name="ppo_trainer", version_base=None)
    def _run(config: Any) -> None:
        try:
            check_config(config)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        main_ppo.auto_set_device(config)
        main_ppo.run_ppo(config, task_runner_class=task_runner_class())

    _run()


if __name__ == "__main__":
    main()
