-- Unit tests of the Lua companions (plugin/kong/plugins/ace-context, ace-guard) against a mocked
-- `kong` and `ngx`. The cases live in tests/companions/cases.json, which the Python harness that
-- plays the companions (kong_ace.testing.companions) runs too: both must agree on every case.
-- Run from the repository root: busted tests/lua

local json = require "dkjson"

local source = debug.getinfo(1, "S").source:sub(2)
local root = source:match("^(.*)tests/lua/[^/]*$") or ""
package.path = root .. "plugin/?.lua;" .. package.path

local function read_cases()
  local f = assert(io.open(root .. "tests/companions/cases.json", "r"))
  local text = f:read("*a")
  f:close()
  local cases, _, err = json.decode(text, 1, json.null)
  assert(cases, err)
  return cases
end

local CASES = read_cases()

-- The header lines of a case, in the order ngx.req.get_headers meets them: the listed ones,
-- then `filler` more.
local function header_lines(req)
  local lines = {}
  for name, value in pairs(req.headers or {}) do
    if type(value) == "table" then
      for _, v in ipairs(value) do
        lines[#lines + 1] = { name, v }
      end
    else
      lines[#lines + 1] = { name, value }
    end
  end
  for i = 1, req.filler or 0 do
    lines[#lines + 1] = { "x-filler-" .. i, tostring(i) }
  end
  return lines
end

-- ngx.req.get_headers(max): lower-cased names, a string or a list per name, "truncated".
local function get_headers(lines, max)
  local out, n = {}, 0
  for _, line in ipairs(lines) do
    n = n + 1
    if n > max then
      return out, "truncated"
    end
    local name, value = line[1]:lower(), line[2]
    local prev = out[name]
    if prev == nil then
      out[name] = value
    elseif type(prev) == "table" then
      prev[#prev + 1] = value
    else
      out[name] = { prev, value }
    end
  end
  return out
end

local function first(v)
  if type(v) == "table" then
    return v[1]
  end
  return v
end

local function nonnull(v)
  if v == json.null then
    return nil
  end
  return v
end

-- A fresh mocked Kong for one request; `state` records what the handlers did.
local function mock(req, consumers)
  local lines = header_lines(req)
  local request_headers = get_headers(lines, 1000000)
  local state = {
    ctx = {},
    upstream = {},
    query = (req.target or "/"):match("%?(.*)$") or "",
    response = {},
    serialized = {},
    logs = {},
  }
  for name, value in pairs(request_headers) do
    state.upstream[name] = type(value) == "table" and value or { value }
  end

  local function set_upstream(name, value)
    if type(value) == "table" then
      local copy = {}
      for i, v in ipairs(value) do
        copy[i] = tostring(v)
      end
      state.upstream[name:lower()] = copy
    else
      state.upstream[name:lower()] = { tostring(value) }
    end
  end

  _G.ngx = {
    ctx = state.ctx,
    var = {
      request_uri = req.target,
      http_host = first(request_headers.host),
      host = req.authority,
      upstream_uri = req.upstream_uri,
    },
    req = {
      get_headers = function(max)
        return get_headers(lines, max)
      end,
      read_body = function()
        state.body_read = true
      end,
      -- nil before read_body, for a spilled body and for an empty one (lua-nginx-module)
      get_body_data = function()
        assert(state.body_read, "get_body_data before read_body")
        local body = nonnull(req.body)
        if req.body_in_file or body == nil or body == "" then
          return nil
        end
        return body
      end,
      get_body_file = function()
        assert(state.body_read, "get_body_file before read_body")
        return req.body_in_file and "/tmp/nginx/client_body_temp/0000000001" or nil
      end,
    },
  }
  _G.kong = {
    request = {
      get_method = function() return req.method end,
      get_path = function() return req.path end,
    },
    router = {
      get_route = function() return nonnull(req.route) end,
      get_service = function() return nonnull(req.service) end,
    },
    client = {
      get_consumer = function() return nonnull(req.consumer) end,
      get_credential = function() return nonnull(req.credential) end,
      load_consumer = function(ref, by_username)
        for _, c in ipairs(consumers or {}) do
          if c.id == ref then
            return c
          end
        end
        if by_username then
          for _, c in ipairs(consumers or {}) do
            if c.username == ref then
              return c
            end
          end
        end
        return nil
      end,
      authenticate = function(consumer, credential)
        assert(consumer ~= nil or credential ~= nil, "either credential or consumer")
        state.consumer = consumer
      end,
    },
    service = {
      request = {
        set_header = set_upstream,
        set_headers = function(headers)
          for name, value in pairs(headers) do
            set_upstream(name, value)
          end
        end,
        clear_header = function(name)
          state.upstream[name:lower()] = nil
        end,
        set_path = function(path)
          assert(type(path) == "string", "path must be a string")
          state.path = path
        end,
        set_raw_query = function(q)
          assert(type(q) == "string", "query must be a string")
          state.query = q
        end,
      },
    },
    response = {
      set_headers = function(headers)
        for name, value in pairs(headers) do
          state.response[name] = value
        end
      end,
      exit = function(status, body, headers)
        assert(state.exit == nil, "exit called twice")
        state.exit = { status = status, body = body, headers = headers or {} }
      end,
    },
    log = {
      err = function(...)
        state.logs[#state.logs + 1] = table.concat({ ... })
      end,
      set_serialize_value = function(key, value)
        state.serialized[key] = value
      end,
    },
  }
  return state
end

-- Load a handler afresh: it captures `kong` and `ngx` when it is loaded, as in Kong.
local function handler(name)
  package.loaded["kong.plugins." .. name .. ".handler"] = nil
  return require("kong.plugins." .. name .. ".handler")
end

local function count(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

describe("the companions' plugin shape", function()
  it("run right before and right after ace (955)", function()
    mock({ headers = {} })
    assert.equal(956, handler("ace-context").PRIORITY)
    assert.equal(954, handler("ace-guard").PRIORITY)
    assert.is_function(handler("ace-context").access)
    assert.is_function(handler("ace-guard").access)
  end)

  it("have schemas with an empty config record", function()
    for _, name in ipairs({ "ace-context", "ace-guard" }) do
      package.loaded["kong.plugins." .. name .. ".schema"] = nil
      local schema = require("kong.plugins." .. name .. ".schema")
      assert.equal(name, schema.name)
      assert.same({ type = "record", fields = {} }, schema.fields[1].config)
    end
  end)
end)

describe("ace-context", function()
  for _, case in ipairs(CASES.context) do
    it(case.name, function()
      local state = mock(case.request)
      state.ctx.kong_ace_verdict = { allow = true } -- a stale verdict never survives
      handler("ace-context"):access({})
      assert.is_nil(state.ctx.kong_ace_verdict)
      local got = state.ctx.kong_ace_request
      assert.is_table(got)
      for key, want in pairs(case.expect) do
        assert.same(nonnull(want), got[key], key)
      end
      if case.expect_header_count then
        assert.equal(case.expect_header_count, count(got.headers))
      end
      for name, want in pairs(case.expect_headers_include or {}) do
        assert.same(want, got.headers[name])
      end
    end)
  end
end)

describe("ace-guard", function()
  for _, case in ipairs(CASES.guard) do
    it(case.name, function()
      local state = mock(case.request, case.consumers)
      state.ctx.kong_ace_verdict = nonnull(case.verdict)
      handler("ace-guard"):access({})
      local want = case.expect
      if want.exit then
        assert.same(want.exit, state.exit)
        if want.exit.status == 503 then
          assert.equal(1, #state.logs) -- Kong's error log says why
        end
      else
        assert.is_nil(state.exit)
      end
      for name, value in pairs(want.upstream or {}) do
        if value == json.null then
          assert.is_nil(state.upstream[name], name)
        else
          assert.equal(value, first(state.upstream[name]), name)
        end
      end
      if want.query then
        assert.equal(want.query, state.query)
      end
      if want.path then
        assert.equal(want.path, state.path)
      end
      if want.response_headers then
        assert.same(want.response_headers, state.response)
      end
      if want.consumer then
        assert.same(want.consumer, state.consumer)
      elseif not want.exit then
        assert.is_nil(state.consumer)
      end
      if want.serialized then
        assert.same(want.serialized, state.serialized)
      end
    end)
  end
end)
