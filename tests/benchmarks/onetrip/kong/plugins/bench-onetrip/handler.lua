-- A benchmark yardstick, never a plugin: the floor of the one-round-trip design proposed in
-- docs/performance.md. It gathers what ace-context gathers, sends it as one JSON line over its
-- own pooled cosocket to onetrip/server.py (lua-cjson encodes and decodes in C, where Kong's
-- plugin-server RPC packs every key and value in pure Lua, MessagePack.lua), reads one verdict
-- line and applies it as ace-guard does. No answer is a 503, as in companion mode.

local cjson = require "cjson.safe"

local ngx = ngx
local kong = kong
local type = type
local tcp = ngx.socket.tcp

local UNAVAILABLE = { message = "access control unavailable" }

local OneTrip = {
  VERSION = "0.0.1",
  PRIORITY = 955,
}

local function ids(entity)
  if type(entity) ~= "table" then
    return nil
  end
  return { id = entity.id, name = entity.name }
end

function OneTrip:access(conf)
  local headers, err = ngx.req.get_headers(1000)
  local consumer = kong.client.get_consumer()
  local request = {
    method = kong.request.get_method(),
    target = ngx.var.request_uri,
    path = kong.request.get_path(),
    host = ngx.var.http_host,
    authority = ngx.var.host,
    headers = headers,
    headers_truncated = err == "truncated" or nil,
    consumer = type(consumer) == "table" and { id = consumer.id } or nil,
    service = ids(kong.router.get_service()),
  }
  local sock = tcp()
  local ok = sock:connect("unix:" .. conf.socket)
  if not ok then
    return kong.response.exit(503, UNAVAILABLE)
  end
  local sent = sock:send({ cjson.encode(request), "\n" })
  local line = sent and sock:receive("*l")
  if not line then
    sock:close()
    return kong.response.exit(503, UNAVAILABLE)
  end
  sock:setkeepalive()
  local v = cjson.decode(line)
  if type(v) ~= "table" or v.allow ~= true then
    return kong.response.exit(503, UNAVAILABLE)
  end
  kong.service.request.set_headers(v.set)
  kong.response.set_headers(v.response_headers)
  kong.log.set_serialize_value("ace", v.summary)
end

return OneTrip
