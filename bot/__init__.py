"""The Discord front end (discord.py only). Not built yet: it arrives with issue #6; `salon run` says so."""
