-- ace-context (priority 956: after every auth plugin, right before `ace` at 955).
--
-- Gathers, in Lua and without any round trip to the plugin server, everything ACE decides on
-- into one ngx.ctx table (SPEC §9). The Python plugin reads it with one kong.nginx.get_ctx and
-- answers with one kong.nginx.set_ctx; ace-guard (954) applies that verdict. This file moves
-- data only: every decision is ACE's.

local ngx = ngx
local kong = kong
local type = type
local find = string.find
local lower = string.lower
local match = string.match

local REQUEST_KEY = "kong_ace_request"
local VERDICT_KEY = "kong_ace_verdict"

-- Headers read per request. kong.request.get_headers() stops at 100 (lua_max_req_headers); 1000
-- is the most kong/pdk/request.lua get_headers accepts. More than that sets headers_truncated,
-- and ACE decides knowing it did not see them all.
local MAX_HEADERS = 1000

local function first(value)
  if type(value) == "table" then
    return value[1]
  end
  return value
end

local function ids(entity)
  if type(entity) ~= "table" then
    return nil
  end
  return { id = entity.id, name = entity.name }
end

-- The body kinds Laravel reads `_method` from on a POST (keep in step with
-- kong_ace/core/readings.py body_kind): PHP cuts the media type at ';', ',' or ' '
-- (main/SAPI.c); Laravel's Request::isJson looks for '/json' or '+json'.
local function body_kind(content_type)
  content_type = first(content_type)
  if type(content_type) ~= "string" then
    return nil
  end
  local low = lower(content_type)
  local media = match(low, "^%s*([^;, ]*)")
  if media == "application/x-www-form-urlencoded" then
    return "form"
  end
  if media == "multipart/form-data" then
    return "multipart"
  end
  if find(low, "/json", 1, true) or find(low, "+json", 1, true) then
    return "json"
  end
  return nil
end

-- Whether a body of `kind` can spell `_method` at all (readings.py may_override): only then
-- does it cross to the plugin server.
local function may_override(kind, body)
  if find(body, "method", 1, true) then
    return true
  end
  if kind == "form" then
    return find(body, "%", 1, true) ~= nil -- '%6Dethod'
  end
  if kind == "json" then
    return find(body, "\\", 1, true) ~= nil -- '\u006dethod'
  end
  return false
end

-- A POST body ACE must screen for `_method` (SPEC §8): the buffered body, "" when it cannot
-- name an override, or spilled = true when nginx wrote it to a file (bigger than
-- client_body_buffer_size), which ACE treats as uninspected (uninspected_body_action).
local function post_body(method, headers)
  if method ~= "POST" then
    return nil, nil
  end
  local kind = body_kind(headers["content-type"])
  if not kind then
    return nil, nil
  end
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then
    return may_override(kind, data) and data or "", nil
  end
  if ngx.req.get_body_file() then
    return nil, true
  end
  return "", nil
end

local AceContext = {
  VERSION = "0.1.0",
  PRIORITY = 956,
}

function AceContext:access(conf)
  local ctx = ngx.ctx
  ctx[VERDICT_KEY] = nil -- only a verdict written for this request may ever be applied

  -- ngx.req.get_headers: lower-cased names, a string or a list of strings per name, and
  -- "truncated" as second value when there were more than MAX_HEADERS.
  local headers, err = ngx.req.get_headers(MAX_HEADERS)

  -- kong/pdk/client.lua: auth plugins store the consumer and the credential in
  -- ngx.ctx.authenticated_consumer / authenticated_credential (kong.client.authenticate).
  local consumer = kong.client.get_consumer()
  local credential = kong.client.get_credential()
  local caller, anonymous
  if type(consumer) == "table" then
    caller = { id = consumer.id, username = consumer.username, custom_id = consumer.custom_id }
    -- kong/plugins/key-auth/handler.lua set_consumer: an anonymous consumer is authenticated
    -- without a credential and marked with the X-Anonymous-Consumer: true request header.
    anonymous = credential == nil or first(headers["x-anonymous-consumer"]) == "true" or nil
  end

  local method = kong.request.get_method()
  local body, spilled = post_body(method, headers)

  -- Every key and value crossing to the plugin server costs Kong CPU (MessagePack.lua packs in
  -- pure Lua): false flags are left out (nil), and the route, which ACE never reads, too.

  ctx[REQUEST_KEY] = {
    method = method,
    target = ngx.var.request_uri,          -- the raw request target, query included
    path = kong.request.get_path(),        -- Kong's normalised path (kong/tools/uri.lua)
    host = ngx.var.http_host,              -- the Host header, which Kong's router matches
    authority = ngx.var.host,              -- nginx $host: an absolute-form host wins
    headers = headers,
    headers_truncated = err == "truncated" or nil,
    consumer = caller,
    credential = credential ~= nil or nil,
    anonymous = anonymous,
    service = ids(kong.router.get_service()),
    body = body,
    body_spilled = spilled,
  }
end

return AceContext
