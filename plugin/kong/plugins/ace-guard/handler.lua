-- ace-guard (priority 954: right after `ace` at 955).
--
-- Applies the verdict the Python plugin wrote into ngx.ctx (SPEC §9). Kong lets a request
-- through when its call to a plugin server fails (kong/runloop/plugin_servers/rpc/mp_rpc.lua
-- Rpc:handle_event logs the error and returns), so the absence of a verdict is the one sign
-- that ACE did not decide: whatever the reason, the request is answered 503. Enable this
-- plugin with the same scope as `ace` (globally), or every request it sees without ACE is 503.

local ngx = ngx
local kong = kong
local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local floor = math.floor

local VERDICT_KEY = "kong_ace_verdict"

local UNAVAILABLE_STATUS = 503
local UNAVAILABLE = { message = "access control unavailable" }
local UNEXPECTED = { message = "An unexpected error occurred" }

-- kong/constants.lua HEADERS: what Kong's auth plugins set for the authenticated consumer.
local CONSUMER_ID = "X-Consumer-ID"
local CONSUMER_CUSTOM_ID = "X-Consumer-Custom-ID"
local CONSUMER_USERNAME = "X-Consumer-Username"
local CREDENTIAL_IDENTIFIER = "X-Credential-Identifier"
local ANONYMOUS = "X-Anonymous-Consumer"

local function is_status(v)
  return type(v) == "number" and v == floor(v) and v >= 100 and v <= 599
end

-- nil, or a list (a sequence, nothing else) of strings
local function is_names(v)
  if v == nil then
    return true
  end
  if type(v) ~= "table" then
    return false
  end
  local n = 0
  for k, name in pairs(v) do
    n = n + 1
    if type(k) ~= "number" or type(name) ~= "string" then
      return false
    end
  end
  return n == #v
end

local function is_header_value(v)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then
    return true
  end
  return t == "table" and is_names(v)
end

-- nil, or a map of header name -> value (kong/pdk/private/checks.lua validate_headers)
local function is_headers(v)
  if v == nil then
    return true
  end
  if type(v) ~= "table" then
    return false
  end
  for name, value in pairs(v) do
    if type(name) ~= "string" or not is_header_value(value) then
      return false
    end
  end
  return true
end

local function is_summary(v)
  return v == nil or type(v) == "table"
end

-- A verdict is a denial {status, body, headers?, summary?} or an admission {allow = true,
-- set?, clear?, query?, path?, path_if?, path_refusal?, response_headers?, authenticate?,
-- anonymous?, summary?}. Anything else
-- is malformed, and checked whole before anything is applied.
local function is_denial(v)
  return is_status(v.status)
    and (v.body == nil or type(v.body) == "table" or type(v.body) == "string")
    and is_headers(v.headers) and is_summary(v.summary)
end

local function is_admission(v)
  return v.allow == true and v.status == nil
    and is_headers(v.set) and is_names(v.clear)
    and (v.query == nil or type(v.query) == "string")
    and (v.path == nil or (type(v.path) == "string" and type(v.path_if) == "string"
                           and type(v.path_refusal) == "table"))
    and is_headers(v.response_headers)
    and (v.authenticate == nil or (type(v.authenticate) == "string" and v.authenticate ~= ""))
    and (v.anonymous == nil or type(v.anonymous) == "boolean")
    and is_summary(v.summary)
end

-- kong/tools/uuid.lua is_valid_uuid, as a pattern (any case)
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function is_uuid(ref)
  return string.match(ref, UUID) ~= nil
end

local function unavailable(reason)
  kong.log.err("ace-guard: ", reason, ": answering ", UNAVAILABLE_STATUS)
  return kong.response.exit(UNAVAILABLE_STATUS, UNAVAILABLE)
end

-- What kong/plugins/key-auth/handler.lua set_consumer sends upstream, without a credential.
local function consumer_headers(consumer, anonymous)
  local request = kong.service.request
  local function set(name, value)
    if type(value) == "string" and value ~= "" then
      request.set_header(name, value)
    else
      request.clear_header(name)
    end
  end
  set(CONSUMER_ID, consumer.id)
  set(CONSUMER_CUSTOM_ID, consumer.custom_id)
  set(CONSUMER_USERNAME, consumer.username)
  request.clear_header(CREDENTIAL_IDENTIFIER)
  set(ANONYMOUS, anonymous and "true" or nil)
end

local function admit(v)
  local request = kong.service.request
  if v.path then
    -- The decided (unescaped) path replaces Kong's only where the route did not rewrite it
    -- ($upstream_uri is still escape(normalised path), kong/runloop/handler.lua): refuse
    -- rather than guess how the route rewrote it.
    if ngx.var.upstream_uri ~= v.path_if then
      return kong.response.exit(400, v.path_refusal)
    end
    request.set_path(v.path)
  end
  -- Clear first, then set: a name in both (ACE's own identity headers) ends up set.
  if v.clear then
    for _, name in ipairs(v.clear) do
      request.clear_header(name)
    end
  end
  if v.set and next(v.set) ~= nil then
    request.set_headers(v.set)
  end
  if v.authenticate then
    -- kong.client.load_consumer reads through Kong's entity cache: no round trip. A reference
    -- that is a UUID names the id only (no fall-back to a username), as ACE maps consumers.
    local consumer = kong.client.load_consumer(v.authenticate, not is_uuid(v.authenticate))
    if type(consumer) ~= "table" then
      -- Like key-auth with a missing anonymous consumer: a configuration fault, a 500.
      kong.log.err("ace-guard: consumer '", v.authenticate, "' is configured but Kong has none")
      return kong.response.exit(500, UNEXPECTED)
    end
    kong.client.authenticate(consumer, nil)
    consumer_headers(consumer, v.anonymous == true)
  end
  if v.query then
    request.set_raw_query(v.query)
  end
  if v.response_headers and next(v.response_headers) ~= nil then
    kong.response.set_headers(v.response_headers)
  end
  if v.summary then
    kong.log.set_serialize_value("ace", v.summary)
  end
end

local AceGuard = {
  VERSION = "0.1.0",
  PRIORITY = 954,
}

function AceGuard:access(conf)
  local v = ngx.ctx[VERDICT_KEY]
  if v == nil then
    return unavailable("no verdict from ace")
  end
  if type(v) ~= "table" then
    return unavailable("malformed verdict from ace")
  end
  if v.allow == nil then
    if not is_denial(v) then
      return unavailable("malformed verdict from ace")
    end
    if v.summary then
      kong.log.set_serialize_value("ace", v.summary)
    end
    return kong.response.exit(v.status, v.body, v.headers)
  end
  if not is_admission(v) then
    return unavailable("malformed verdict from ace")
  end
  return admit(v)
end

return AceGuard
