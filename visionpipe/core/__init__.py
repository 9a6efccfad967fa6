"""The ground every other package stands on: errors, typed config, the task registry, the
feature spec and the Examples artifact contract. Nothing here imports above ``core``."""
