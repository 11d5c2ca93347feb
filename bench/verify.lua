-- POST /api/verify with pre-made flows whose codes are known, each flow used once.
-- args: the flows file (one "flow_id,code" a line) and the number of wrk threads; thread k
-- takes every line n with n % threads == k - 1, so no two threads share a flow.
local flows = {}
local next_flow = 0

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function init(args)
  local path = args[1]
  local threads = tonumber(args[2] or "1")
  local n = 0
  for line in io.lines(path) do
    if n % threads == tid - 1 then
      local id, code = line:match("^([^,]+),(%d+)$")
      flows[#flows + 1] = string.format('{"flow_id":"%s","code":"%s"}', id, code)
    end
    n = n + 1
  end
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  -- Past the end the flows are reused on purpose: those answers are errors (409), and the
  -- table shows them, which says "make more flows" rather than hiding a wrap-around.
  next_flow = next_flow % #flows + 1
  return wrk.format("POST", "/api/verify", nil, flows[next_flow])
end
