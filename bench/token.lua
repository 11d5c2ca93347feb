-- POST /oauth/token with pre-minted authorization codes, each code exchanged once.
-- args: the codes file (one code a line), the number of wrk threads, the redirect URI; thread
-- k takes every line n with n % threads == k - 1, so no two threads share a code.
local codes = {}
local next_code = 0

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

local function form_escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  local path = args[1]
  local threads = tonumber(args[2] or "1")
  local redirect = form_escape(args[3])
  local n = 0
  for line in io.lines(path) do
    if n % threads == tid - 1 then
      codes[#codes + 1] = "grant_type=authorization_code&code=" .. line
        .. "&redirect_uri=" .. redirect
    end
    n = n + 1
  end
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end

function request()
  -- Past the end the codes are reused on purpose: those answers are errors (400, and the
  -- grant revoked), which the table shows, rather than hiding a wrap-around.
  next_code = next_code % #codes + 1
  return wrk.format("POST", "/oauth/token", nil, codes[next_code])
end
