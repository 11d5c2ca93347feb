-- POST /api/start with an address that no other request of the run uses.
-- args: a prefix unique to this phase (warm-up and measurement differ), so that no
-- address repeats across phases or threads either.
local counter = 0

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function init(args)
  prefix = args[1] or "s"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format('{"email":"%s-%d-%d@bench.example.com"}', prefix, tid, counter)
  return wrk.format("POST", "/api/start", nil, body)
end
