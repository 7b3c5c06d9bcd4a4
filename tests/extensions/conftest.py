from tests.bot.conftest import salon  # noqa: F401  (the running bot fixture, for the bot test here)
