-- ace-guard: no settings. Enable it with the same scope as `ace` (globally): it answers 503 to
-- every request that reaches it without ACE's verdict (docs/running.md, "Modes").
return {
  name = "ace-guard",
  fields = {
    { config = { type = "record", fields = {} } },
  },
}
