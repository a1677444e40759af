-- The yardstick's only setting: the unix socket of onetrip/server.py.
return {
  name = "bench-onetrip",
  fields = {
    { config = {
        type = "record",
        fields = {
          { socket = { type = "string", required = true } },
        },
    } },
  },
}
