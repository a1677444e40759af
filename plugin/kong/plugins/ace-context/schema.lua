-- ace-context: no settings. Enable it globally, with `ace` and `ace-guard` (docs/running.md, "Modes").
return {
  name = "ace-context",
  fields = {
    { config = { type = "record", fields = {} } },
  },
}
