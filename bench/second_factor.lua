-- POST /api/second-factor with pre-made pending sign-ins, each answered once with its code.
-- args: the file (one "latch_signin cookie value,code" a line), the number of wrk threads and
-- the cookie's name; thread k takes every line n with n % threads == k - 1, so no two threads
-- share a pending sign-in.
local steps = {}
local next_step = 0

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function init(args)
  local path = args[1]
  local threads = tonumber(args[2] or "1")
  local name = args[3]
  local n = 0
  for line in io.lines(path) do
    if n % threads == tid - 1 then
      local cookie, code = line:match("^([^,]+),(%d+)$")
      steps[#steps + 1] = {
        cookie = name .. "=" .. cookie,
        body = string.format('{"method":"totp","code":"%s"}', code),
      }
    end
    n = n + 1
  end
end

function request()
  -- Past the end the pending sign-ins are reused on purpose: those answers are errors (the
  -- sign-in is used: 4xx), and the table shows them, rather than hiding a wrap-around.
  next_step = next_step % #steps + 1
  local step = steps[next_step]
  -- Headers of its own replace wrk.headers (wrk.format copies only Host from them).
  local headers = { ["Content-Type"] = "application/json", ["Cookie"] = step.cookie }
  return wrk.format("POST", "/api/second-factor", headers, step.body)
end
