"""The `tourney` commands: a thin layer over functions the tests call directly, above every other
layer (cli -> routers / trainers -> harness -> models). One module per command group."""
