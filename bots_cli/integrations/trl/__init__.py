"""BOTS inside Hugging Face TRL: `BotsGRPOTrainer`, a GRPOTrainer that a selector feeds.

    from bots_cli.integrations.trl import BotsGRPOTrainer
    trainer = BotsGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...),
                              train_dataset=ds, processing_class=tok, selector=sel,
                              task_id_column="task_id")

Importing this package imports TRL and checks its version (`TESTED_TRL`).
"""

from bots_cli.integrations.trl.trainer import (
    STATE_FILE,
    TESTED_TRL,
    BotsGRPOTrainer,
    Feedback,
    SlotSampler,
    UnsupportedVersion,
    check_trl_version,
)

__all__ = ["STATE_FILE", "TESTED_TRL", "BotsGRPOTrainer", "Feedback", "SlotSampler",
           "UnsupportedVersion", "check_trl_version"]
