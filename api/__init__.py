"""The A1111-compatible HTTP API: a front end (beside `bot/` and `web/`) that turns AUTOMATIC1111's
`/sdapi/v1/…` requests into Salon's options and jobs through `commands/` and the queue, and answers in
A1111's shapes. Built and started by the composition root (`app/api.py`); see docs/ARCHITECTURE.md."""
