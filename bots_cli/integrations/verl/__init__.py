"""BOTS inside verl (the paper's trainer): a sampler verl loads, the feedback hook verl ≥ 0.8 lost,
and the project's tasks and rewards in verl's format.

- `sampler.BotsSampler`: the train sampler; `data.sampler.class_path=pkg://bots_cli.integrations.
  verl.sampler`, `class_name=BotsSampler` on verl ≤ 0.7, or through `BotsTaskRunner` on 0.9.
- `trainer`: `BotsRayPPOTrainer` (feeds the sampler before each checkpoint) and `BotsTaskRunner`;
  `python -m bots_cli.integrations.verl.main` launches verl with them.
- `reward.compute_score`: verl's `custom_reward_function` for data from `bots export`.

Importing this package imports no engine; each module imports verl only when it needs it.
"""
