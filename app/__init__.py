"""The composition root: the one place that builds Salon's services from `Settings` and hands them down.

One module per role, each building what that role needs and closing it in reverse order (with
`contextlib.AsyncExitStack`, so a failure half-way closes what was already opened):

- `app.worker`: the worker (`salon worker`): the job store, the catalog, one model registry, the extensions
  (discovered once), the queue with its GPU worker and the engine factory;
- `app.bot`: the bot (`salon run`): the worker's services and the community store, handed to
  `bot.app.run_bot`; the bot runs the worker in the same process unless another process does;
- `app.web`: the web gallery (`salon web`): the catalog and the community store, handed to `web.server`;
- `app.oneshot`: what the CLI's one-shot commands need: the catalog, the queue, the registry, the extensions.

Nothing outside `app/` constructs a service; only `cli/` imports `app/`.
"""
